-- Verified notifications, kept exactly as received. One row per (app_id, dedupe_key):
-- dedupe_key is Alipay's notify_id, or a digest of the signed content when a message has none.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    app_id      TEXT    NOT NULL,
    dedupe_key  TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    handler     TEXT    NOT NULL,
    fields      TEXT    NOT NULL,  -- JSON object of the decoded form fields
    raw_body    BLOB    NOT NULL,
    charset     TEXT    NOT NULL,
    sign_type   TEXT    NOT NULL,
    rule        TEXT    NOT NULL,
    key_label   TEXT    NOT NULL,
    occurred_at INTEGER,           -- epoch milliseconds, from the signed notification
    received_at INTEGER NOT NULL,  -- epoch milliseconds
    UNIQUE (app_id, dedupe_key)
);

-- Append-only consent log. Never updated, never deleted.
CREATE TABLE consent_events (
    id          INTEGER PRIMARY KEY,
    app_id      TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    template_id TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    source      TEXT    NOT NULL,
    evidence    TEXT    NOT NULL
);
CREATE INDEX consent_events_key
    ON consent_events (app_id, user_id, channel, template_id, occurred_at, id);

-- Refusal counters. Keys are bounded: app_id is a configured app or '-', reason a known code.
CREATE TABLE refusal_counts (
    app_id  TEXT    NOT NULL,
    reason  TEXT    NOT NULL,
    count   INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, reason)
) WITHOUT ROWID;
