-- The outbox: every consent-gated send, from reservation to its final outcome.
-- One row per (app, Idempotency-Key): a retried request can never become a second send, even
-- when two replicas receive it at once.
CREATE TABLE messages (
    id              TEXT COLLATE "C" PRIMARY KEY,
    app_id          TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    request_sha256  TEXT    NOT NULL,
    channel         TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    template_id     TEXT COLLATE "C" NOT NULL,
    payload         TEXT    NOT NULL,   -- JSON: what the channel sends to the platform
    status          TEXT COLLATE "C" NOT NULL,   -- pending, sending, queued, sent, failed, unknown
    attempts        INTEGER NOT NULL,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    platform_code   TEXT,
    platform_msg    TEXT,
    sub_code        TEXT,
    sub_msg         TEXT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    sent_at         BIGINT,
    CONSTRAINT messages_once UNIQUE (app_id, idempotency_key)
);
-- Workers look for due pending/queued rows; a partial index keeps that scan off the sent ones.
CREATE INDEX messages_due ON messages (next_attempt_at)
    WHERE status IN ('pending', 'queued');
CREATE INDEX messages_in_flight ON messages (lease_until) WHERE status = 'sending';
