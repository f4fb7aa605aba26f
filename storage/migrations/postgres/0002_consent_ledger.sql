-- Current state per (app, user, channel, template): always equal to the fold of consent_events.
-- Every append locks its key's row (SELECT ... FOR UPDATE), so appends for one key serialise
-- across processes and the projection is never computed from a stale state.
CREATE TABLE consents (
    app_id      TEXT COLLATE "C" NOT NULL,
    user_id     TEXT COLLATE "C" NOT NULL,
    channel     TEXT COLLATE "C" NOT NULL,
    template_id TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    credits     INTEGER NOT NULL CHECK (credits >= 0),
    keep        BOOLEAN NOT NULL,
    refuse      BOOLEAN NOT NULL,
    updated_at  BIGINT,
    last_source TEXT,
    last_key    TEXT,            -- JSON: sort key of the last event applied
    open_spends TEXT    NOT NULL, -- JSON: spends a refund may still give back
    PRIMARY KEY (app_id, user_id, channel, template_id)
);
CREATE INDEX consents_by_template ON consents (app_id, channel, template_id, user_id);

-- my.requestSubscribeMessage results as reported, idempotent on (app, Idempotency-Key).
CREATE TABLE subscribe_reports (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id          TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    body_sha256     TEXT   NOT NULL,
    body            TEXT   NOT NULL,
    received_at     BIGINT NOT NULL,
    outcome         TEXT   NOT NULL,
    CONSTRAINT subscribe_reports_once UNIQUE (app_id, idempotency_key)
);
