-- The operator console's reads (storage/sql/console.py): pages of an app's notifications and
-- messages newest first by keyset, and what one notification caused.
CREATE INDEX notifications_by_time ON notifications (app_id, received_at, id);
CREATE INDEX notifications_by_kind ON notifications (app_id, kind, received_at, id);
CREATE INDEX messages_by_time ON messages (app_id, created_at, id);
CREATE INDEX messages_by_status ON messages (app_id, status, created_at, id);
CREATE INDEX messages_of_user ON messages (app_id, user_id, created_at, id);
CREATE INDEX consent_events_by_evidence ON consent_events (app_id, evidence);
CREATE INDEX events_of_notification ON events (notification_id) WHERE notification_id IS NOT NULL;
CREATE INDEX deliveries_of_event ON deliveries (event_id);

-- Refusals per app, reason and minute, for the console's charts: the counters keep only totals.
-- A trigger adds each flush's growth to the minute of its time, so no write path changes.
CREATE TABLE refusal_minutes (
    app_id TEXT   NOT NULL,
    reason TEXT   NOT NULL,
    minute BIGINT NOT NULL,  -- epoch minutes
    count  BIGINT NOT NULL,
    PRIMARY KEY (app_id, minute, reason)
)
;

CREATE FUNCTION subgate_refusal_minutes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grown BIGINT := NEW.count - CASE WHEN TG_OP = 'UPDATE' THEN OLD.count ELSE 0 END;
BEGIN
    IF grown > 0 THEN
        INSERT INTO refusal_minutes (app_id, reason, minute, count)
        VALUES (NEW.app_id, NEW.reason, NEW.last_at / 60000, grown)
        ON CONFLICT (app_id, minute, reason)
        DO UPDATE SET count = refusal_minutes.count + excluded.count;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER refusal_minutes AFTER INSERT OR UPDATE ON refusal_counts
    FOR EACH ROW EXECUTE FUNCTION subgate_refusal_minutes();
