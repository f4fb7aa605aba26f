-- The event log: a transactional outbox. Each event is written by a trigger in the same
-- statement as its cause (a new notification, a saved consent state, a message reaching an
-- outcome), so no code path can store a cause without its event, or an event without its cause.
-- SQLite's one writer commits in id order, so txid is always 0 here; PostgreSQL orders by it.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY,
    txid            INTEGER NOT NULL DEFAULT 0,
    type            TEXT    NOT NULL,  -- notification.received, consent.changed, message.updated
    app_id          TEXT    NOT NULL,
    user_id         TEXT,              -- whose per-user delivery order it keeps; NULL: none
    kind            TEXT,              -- notification.received: the notification's kind
    notification_id INTEGER,           -- notification.received: its data is read from there
    data            TEXT,              -- the others: a JSON snapshot taken when it was written
    created_at      INTEGER NOT NULL   -- epoch milliseconds
);
CREATE INDEX events_of_app ON events (app_id, txid, id);
CREATE INDEX events_by_time ON events (created_at);

CREATE TRIGGER notification_received AFTER INSERT ON notifications BEGIN
    INSERT INTO events (type, app_id, kind, notification_id, created_at)
    VALUES ('notification.received', NEW.app_id, NEW.kind, NEW.id, NEW.received_at);
END;

-- A key's state is saved once per event appended to its log (an empty row, without last_key,
-- is no change): the event names the log entry that changed it, whose id is the sequence.
CREATE TRIGGER consent_changed_on_insert AFTER INSERT ON consents
WHEN NEW.last_key IS NOT NULL BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id),
        e.recorded_at
    FROM consent_events AS e
    WHERE e.app_id = NEW.app_id AND e.user_id = NEW.user_id AND e.channel = NEW.channel
        AND e.template_id = NEW.template_id
    ORDER BY e.id DESC LIMIT 1;
END;

CREATE TRIGGER consent_changed_on_update AFTER UPDATE ON consents
WHEN NEW.last_key IS NOT NULL BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id),
        e.recorded_at
    FROM consent_events AS e
    WHERE e.app_id = NEW.app_id AND e.user_id = NEW.user_id AND e.channel = NEW.channel
        AND e.template_id = NEW.template_id
    ORDER BY e.id DESC LIMIT 1;
END;

-- A message reaching an outcome of an attempt (not 'pending' or 'sending', which are its way
-- there).
CREATE TRIGGER message_updated AFTER UPDATE OF status ON messages
WHEN NEW.status IS NOT OLD.status AND NEW.status IN ('queued', 'sent', 'failed', 'unknown') BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    VALUES ('message.updated', NEW.app_id, NEW.user_id,
        json_object('message_id', NEW.id, 'channel', NEW.channel,
            'template_id', NEW.template_id, 'status', NEW.status, 'attempts', NEW.attempts,
            'platform_code', NEW.platform_code, 'platform_msg', NEW.platform_msg,
            'sub_code', NEW.sub_code, 'sub_msg', NEW.sub_msg),
        NEW.updated_at);
END;

-- Where each event goes: one row per (destination, event), made by the fan-out once the event
-- is committed; 'pending' until delivered, or dead after the destination's give-up time.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    destination     TEXT    NOT NULL,
    event_id        INTEGER NOT NULL,
    event_txid      INTEGER NOT NULL,
    app_id          TEXT    NOT NULL,
    user_id         TEXT,              -- the event's: a later event of this user waits
    status          TEXT    NOT NULL,  -- pending, delivered, dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    retry_since     INTEGER NOT NULL,  -- the give-up time counts from here (made or replayed)
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,           -- the last attempt's HTTP status, if it got one
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (destination, event_id)
);
-- Claims walk a destination's pending deliveries in event order (the per-user order), skipping
-- those not yet due or leased, and stop at their limit: no sort of the whole backlog per claim.
CREATE INDEX deliveries_due ON deliveries (destination, status, event_txid, event_id);
CREATE INDEX deliveries_of_user ON deliveries (destination, app_id, user_id, event_txid, event_id)
    WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL,
    attempted_at INTEGER NOT NULL,
    status_code  INTEGER,          -- NULL: no answer (timeout, refused connection)
    latency_ms   INTEGER NOT NULL,
    error        TEXT
);
CREATE INDEX delivery_attempts_of ON delivery_attempts (delivery_id, id);

-- How far each destination's fan-out has read the event log.
CREATE TABLE destination_cursors (
    destination TEXT    PRIMARY KEY,
    txid        INTEGER NOT NULL,
    event_id    INTEGER NOT NULL
);
