-- The outbox: every consent-gated send, from reservation to its final outcome.
-- One row per (app, Idempotency-Key): a retried request can never become a second send.
CREATE TABLE messages (
    id              TEXT    PRIMARY KEY,
    app_id          TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    request_sha256  TEXT    NOT NULL,
    channel         TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    template_id     TEXT    NOT NULL,
    payload         TEXT    NOT NULL,   -- JSON: what the channel sends to the platform
    status          TEXT    NOT NULL,   -- pending, sending, queued, sent, failed, unknown
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    platform_code   TEXT,
    platform_msg    TEXT,
    sub_code        TEXT,
    sub_msg         TEXT,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    UNIQUE (app_id, idempotency_key)
);
CREATE INDEX messages_due ON messages (status, next_attempt_at);
