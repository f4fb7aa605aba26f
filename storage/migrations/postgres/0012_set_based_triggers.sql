-- A batch's events written once per statement, and totals that concurrent writers do not queue on.
--
-- A row trigger is a plpgsql call and a statement of its own for every row: a batch of
-- notifications (storage/postgres/intake_rows.py, one INSERT for the whole batch) made one of
-- each per notification. The notifications' trigger is now a statement-level one: it sees the
-- statement's rows as a transition table and writes all their events in one INSERT ... SELECT,
-- in the order of the notifications' ids (a batch is inserted in key order, so its ids, and now
-- its events, follow it, as the row trigger's did). It is still a trigger on the table, so no
-- code path can store a notification without its event (0006_events.sql), and the events keep
-- the writing transaction's txid.
--
-- The other triggers stay row triggers. Their statements write one row (a send's message and
-- its recipient's state, an outcome, a delivery), and for one row a statement-level trigger
-- costs more than a row trigger: the transition tables are filled, and an UPDATE trigger with
-- them cannot name the columns it waits for (UPDATE OF), so it would run for every lease too.
-- The two triggers of an attempt (0009_message_attempts.sql) need UPDATE OF besides: which one
-- records the attempt depends on the columns the UPDATE names.
--
-- The totals (0010_message_counts.sql, 0011_delivery_counts.sql) are spread over rows so that
-- concurrent writers do not queue on one row until their commits. Chosen by the row's id, two
-- sends of one app often landed on the same row, and the later one waited for the earlier one's
-- commit (its WAL flush), holding a pooled connection meanwhile. A change now goes to the rows
-- of the server process that writes it (pg_backend_pid() & 63): a connection's transactions run
-- one after the other, so it never waits for itself, and a pool's connections, started
-- together, have neighbouring process ids and so rows of their own. A total is still the sum of
-- its rows, and a row alone may go below 0 (a message counted in by one process and out by
-- another). The rows already there keep their counts, so every sum stays what it was.
--
-- Each object is dropped if present and made again, so the script can run again over its own
-- result (as it does when a test takes the schema back to before 0011).

DROP TRIGGER IF EXISTS notification_received ON notifications;
DROP FUNCTION IF EXISTS subgate_notification_received();
CREATE OR REPLACE FUNCTION subgate_notifications_received() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, app_id, kind, notification_id, created_at)
    SELECT 'notification.received', n.app_id, n.kind, n.id, n.received_at
    FROM received AS n ORDER BY n.id;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS notifications_received ON notifications;
CREATE TRIGGER notifications_received AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS received
    FOR EACH STATEMENT EXECUTE FUNCTION subgate_notifications_received();

-- Message totals: still row triggers (0010_message_counts.sql), each change now on its own
-- process's rows.
CREATE OR REPLACE FUNCTION subgate_message_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_counts AS c (app_id, channel, status, shard, count)
    SELECT change.app_id, change.channel, change.status, pg_backend_pid() & 63, change.delta
    FROM (
        SELECT OLD.app_id, OLD.channel, OLD.status, -1 WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION ALL
        SELECT NEW.app_id, NEW.channel, NEW.status, 1 WHERE TG_OP IN ('INSERT', 'UPDATE')
    ) AS change (app_id, channel, status, delta)
    ORDER BY change.status
    ON CONFLICT (app_id, channel, status, shard) DO UPDATE SET count = c.count + excluded.count;
    RETURN NULL;
END $$;

-- Delivery totals: still row triggers (the deliveries are written a row per statement), each
-- change now on its own process's rows.
CREATE OR REPLACE FUNCTION subgate_delivery_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_counts AS c (destination, state, shard, count)
    SELECT change.destination, change.state, pg_backend_pid() & 63, sum(change.delta)
    FROM (
        SELECT OLD.destination, unnest(subgate_delivery_states(OLD.status, OLD.attempts)), -1
        WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION ALL
        SELECT NEW.destination, unnest(subgate_delivery_states(NEW.status, NEW.attempts)), 1
        WHERE TG_OP IN ('INSERT', 'UPDATE')
    ) AS change (destination, state, delta)
    GROUP BY change.destination, change.state
    HAVING sum(change.delta) <> 0
    ORDER BY change.state
    ON CONFLICT (destination, state, shard) DO UPDATE SET count = c.count + excluded.count;
    RETURN NULL;
END $$;
