-- The client's "always keep" / "don't ask again" flags travel with the event that reported them.
ALTER TABLE consent_events ADD COLUMN keep INTEGER;
ALTER TABLE consent_events ADD COLUMN refuse INTEGER;

-- Current state per (app, user, channel, template): always equal to the fold of consent_events.
CREATE TABLE consents (
    app_id      TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    template_id TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    credits     INTEGER NOT NULL,
    keep        INTEGER NOT NULL,
    refuse      INTEGER NOT NULL,
    updated_at  INTEGER,
    last_source TEXT,
    last_key    TEXT,            -- JSON: sort key of the last event applied
    open_spends TEXT NOT NULL,   -- JSON: spends a refund may still give back
    PRIMARY KEY (app_id, user_id, channel, template_id)
) WITHOUT ROWID;
CREATE INDEX consents_by_template ON consents (app_id, channel, template_id, user_id);

-- my.requestSubscribeMessage results as reported, idempotent on (app, Idempotency-Key).
CREATE TABLE subscribe_reports (
    id              INTEGER PRIMARY KEY,
    app_id          TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL,
    body_sha256     TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    UNIQUE (app_id, idempotency_key)
);
