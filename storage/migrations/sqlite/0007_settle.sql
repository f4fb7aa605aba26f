-- A person settles a message whose outcome is unknown (storage/settlement.py): who, why and when
-- stay on the row; its status becomes settled_delivered or settled_not_delivered, which the
-- message.updated trigger now reports too, with a "settlement" object in its data.
ALTER TABLE messages ADD COLUMN settled_reason TEXT;
ALTER TABLE messages ADD COLUMN settled_by TEXT;
ALTER TABLE messages ADD COLUMN settled_at INTEGER;

DROP TRIGGER message_updated;
CREATE TRIGGER message_updated AFTER UPDATE OF status ON messages
WHEN NEW.status IS NOT OLD.status AND NEW.status IN ('queued', 'sent', 'failed', 'unknown',
    'settled_delivered', 'settled_not_delivered') BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'message.updated', NEW.app_id, NEW.user_id,
        CASE WHEN NEW.settled_at IS NULL THEN snapshot.data
        ELSE json_set(snapshot.data, '$.settlement', json_object('reason', NEW.settled_reason,
            'settled_by', NEW.settled_by)) END,
        NEW.updated_at
    FROM (SELECT json_object('message_id', NEW.id, 'channel', NEW.channel,
            'template_id', NEW.template_id, 'status', NEW.status, 'attempts', NEW.attempts,
            'platform_code', NEW.platform_code, 'platform_msg', NEW.platform_msg,
            'sub_code', NEW.sub_code, 'sub_msg', NEW.sub_msg) AS data) AS snapshot;
END;
