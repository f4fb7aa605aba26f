-- The event log: a transactional outbox. Each event is written by a trigger in the same
-- statement as its cause (a new notification, a saved consent state, a message reaching an
-- outcome), so no code path can store a cause without its event, or an event without its cause.
-- Identity values are handed out before commit, so ids alone do not say which events may still
-- appear behind a reader: txid (the writing transaction's id) does. A reader takes only events
-- whose txid is below the oldest transaction still running (pg_snapshot_xmin), in (txid, id)
-- order, so a cursor never passes an event that commits later.
CREATE TABLE events (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    txid            BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    type            TEXT COLLATE "C" NOT NULL,
    app_id          TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C",
    kind            TEXT,
    notification_id BIGINT,
    data            TEXT,
    created_at      BIGINT NOT NULL
);
CREATE INDEX events_of_app ON events (app_id, txid, id);
CREATE INDEX events_in_order ON events (txid, id);
CREATE INDEX events_by_time ON events (created_at);

CREATE FUNCTION subgate_notification_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, app_id, kind, notification_id, created_at)
    VALUES ('notification.received', NEW.app_id, NEW.kind, NEW.id, NEW.received_at);
    RETURN NULL;
END $$;
CREATE TRIGGER notification_received AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION subgate_notification_received();

-- A key's state is saved once per event appended to its log (an empty row, without last_key,
-- is no change): the event names the log entry that changed it, whose id is the sequence.
CREATE FUNCTION subgate_consent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_build_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id)::text,
        e.recorded_at
    FROM consent_events AS e
    WHERE e.app_id = NEW.app_id AND e.user_id = NEW.user_id AND e.channel = NEW.channel
        AND e.template_id = NEW.template_id
    ORDER BY e.id DESC LIMIT 1;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_changed AFTER INSERT OR UPDATE ON consents
    FOR EACH ROW WHEN (NEW.last_key IS NOT NULL) EXECUTE FUNCTION subgate_consent_changed();

-- A message reaching an outcome of an attempt (not 'pending' or 'sending', which are its way
-- there).
CREATE FUNCTION subgate_message_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    VALUES ('message.updated', NEW.app_id, NEW.user_id,
        json_build_object('message_id', NEW.id, 'channel', NEW.channel,
            'template_id', NEW.template_id, 'status', NEW.status, 'attempts', NEW.attempts,
            'platform_code', NEW.platform_code, 'platform_msg', NEW.platform_msg,
            'sub_code', NEW.sub_code, 'sub_msg', NEW.sub_msg)::text,
        NEW.updated_at);
    RETURN NULL;
END $$;
CREATE TRIGGER message_updated AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
        AND NEW.status IN ('queued', 'sent', 'failed', 'unknown'))
    EXECUTE FUNCTION subgate_message_updated();

-- Where each event goes: one row per (destination, event), made by the fan-out once the event
-- is committed; 'pending' until delivered, or dead after the destination's give-up time.
CREATE TABLE deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination     TEXT COLLATE "C" NOT NULL,
    event_id        BIGINT NOT NULL,
    event_txid      BIGINT NOT NULL,
    app_id          TEXT COLLATE "C" NOT NULL,
    user_id         TEXT COLLATE "C",
    status          TEXT COLLATE "C" NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    retry_since     BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    delivered_at    BIGINT,
    CONSTRAINT deliveries_once UNIQUE (destination, event_id)
);
-- Claims walk a destination's pending deliveries in event order (the per-user order), skipping
-- those not yet due or leased, and stop at their limit: no sort of the whole backlog per claim.
CREATE INDEX deliveries_due ON deliveries (destination, status, event_txid, event_id);
CREATE INDEX deliveries_of_user ON deliveries (destination, app_id, user_id, event_txid, event_id)
    WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id  BIGINT NOT NULL,
    attempted_at BIGINT NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT
);
CREATE INDEX delivery_attempts_of ON delivery_attempts (delivery_id, id);

CREATE TABLE destination_cursors (
    destination TEXT COLLATE "C" PRIMARY KEY,
    txid        BIGINT NOT NULL,
    event_id    BIGINT NOT NULL
);
