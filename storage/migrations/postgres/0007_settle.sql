-- A person settles a message whose outcome is unknown (storage/settlement.py): who, why and when
-- stay on the row; its status becomes settled_delivered or settled_not_delivered, which the
-- message.updated trigger now reports too, with a "settlement" object in its data (json, not
-- jsonb: the keys keep their order, as SQLite's json_object keeps it).
ALTER TABLE messages ADD COLUMN settled_reason TEXT;
ALTER TABLE messages ADD COLUMN settled_by TEXT;
ALTER TABLE messages ADD COLUMN settled_at BIGINT;

CREATE OR REPLACE FUNCTION subgate_message_updated() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    settlement json := CASE WHEN NEW.settled_at IS NOT NULL THEN
        json_build_object('reason', NEW.settled_reason, 'settled_by', NEW.settled_by) END;
    snapshot json;
BEGIN
    IF settlement IS NULL THEN
        snapshot := json_build_object('message_id', NEW.id, 'channel', NEW.channel,
            'template_id', NEW.template_id, 'status', NEW.status, 'attempts', NEW.attempts,
            'platform_code', NEW.platform_code, 'platform_msg', NEW.platform_msg,
            'sub_code', NEW.sub_code, 'sub_msg', NEW.sub_msg);
    ELSE
        snapshot := json_build_object('message_id', NEW.id, 'channel', NEW.channel,
            'template_id', NEW.template_id, 'status', NEW.status, 'attempts', NEW.attempts,
            'platform_code', NEW.platform_code, 'platform_msg', NEW.platform_msg,
            'sub_code', NEW.sub_code, 'sub_msg', NEW.sub_msg, 'settlement', settlement);
    END IF;
    INSERT INTO events (type, app_id, user_id, data, created_at)
    VALUES ('message.updated', NEW.app_id, NEW.user_id, snapshot::text, NEW.updated_at);
    RETURN NULL;
END $$;

DROP TRIGGER message_updated ON messages;
CREATE TRIGGER message_updated AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
        AND NEW.status IN ('queued', 'sent', 'failed', 'unknown', 'settled_delivered',
            'settled_not_delivered'))
    EXECUTE FUNCTION subgate_message_updated();
