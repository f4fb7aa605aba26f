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
WITHOUT ROWID;

CREATE TRIGGER refusal_minutes_on_insert AFTER INSERT ON refusal_counts BEGIN
    INSERT INTO refusal_minutes (app_id, reason, minute, count)
    VALUES (NEW.app_id, NEW.reason, NEW.last_at / 60000, NEW.count)
    ON CONFLICT (app_id, minute, reason) DO UPDATE SET count = count + excluded.count;
END;

CREATE TRIGGER refusal_minutes_on_update AFTER UPDATE ON refusal_counts
WHEN NEW.count > OLD.count BEGIN
    INSERT INTO refusal_minutes (app_id, reason, minute, count)
    VALUES (NEW.app_id, NEW.reason, NEW.last_at / 60000, NEW.count - OLD.count)
    ON CONFLICT (app_id, minute, reason) DO UPDATE SET count = count + excluded.count;
END;
