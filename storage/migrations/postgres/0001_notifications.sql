-- Verified notifications, kept exactly as received. One row per (app_id, dedupe_key): the unique
-- constraint is what makes a notify_id stored once, whichever replica receives it.
-- Times are epoch milliseconds (BIGINT), as in every backend.
-- Identifiers sort and compare byte by byte (COLLATE "C"), as in SQLite, whatever the database locale.
CREATE TABLE notifications (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      TEXT COLLATE "C" NOT NULL,
    dedupe_key  TEXT COLLATE "C" NOT NULL,
    kind        TEXT   NOT NULL,
    handler     TEXT   NOT NULL,
    fields      TEXT   NOT NULL,  -- JSON object of the decoded form fields
    raw_body    BYTEA  NOT NULL,
    charset     TEXT   NOT NULL,
    sign_type   TEXT   NOT NULL,
    rule        TEXT   NOT NULL,
    key_label   TEXT   NOT NULL,
    occurred_at BIGINT,           -- from the signed notification
    received_at BIGINT NOT NULL,
    CONSTRAINT notifications_once UNIQUE (app_id, dedupe_key)
);
-- Retention deletes by signed time.
CREATE INDEX notifications_signed ON notifications (occurred_at) WHERE occurred_at IS NOT NULL;

-- Append-only consent log. Never updated, never deleted.
CREATE TABLE consent_events (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id      TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    channel     TEXT COLLATE "C" NOT NULL,
    template_id TEXT COLLATE "C" NOT NULL,
    action      TEXT    NOT NULL,
    occurred_at BIGINT  NOT NULL,
    recorded_at BIGINT  NOT NULL,
    source      TEXT    NOT NULL,
    evidence    TEXT    NOT NULL,
    keep        BOOLEAN,          -- the client's "always keep this choice", when reported
    refuse      BOOLEAN           -- the client's "don't ask again", when reported
);
CREATE INDEX consent_events_key
    ON consent_events (app_id, user_id, channel, template_id, occurred_at, id);

-- Refusal counters. Keys are bounded: app_id is a configured app or '-', reason a known code.
CREATE TABLE refusal_counts (
    app_id  TEXT COLLATE "C" NOT NULL,
    reason  TEXT COLLATE "C" NOT NULL,
    count   BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, reason)
);
