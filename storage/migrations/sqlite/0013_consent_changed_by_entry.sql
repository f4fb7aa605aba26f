-- A key's saved state names the log entry whose append saved it (changed_by), and the
-- consent.changed triggers read that entry by its primary key instead of looking up the key's
-- newest entry, as on PostgreSQL (where that lookup's plan depended on statistics). Every
-- writer sets changed_by with the state it saves; a row saved without it is no change.
ALTER TABLE consents ADD COLUMN changed_by INTEGER;

DROP TRIGGER consent_changed_on_insert;
DROP TRIGGER consent_changed_on_update;

CREATE TRIGGER consent_changed_on_insert AFTER INSERT ON consents
WHEN NEW.changed_by IS NOT NULL BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id),
        e.recorded_at
    FROM consent_events AS e
    WHERE e.id = NEW.changed_by;
END;

CREATE TRIGGER consent_changed_on_update AFTER UPDATE ON consents
WHEN NEW.changed_by IS NOT NULL BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id),
        e.recorded_at
    FROM consent_events AS e
    WHERE e.id = NEW.changed_by;
END;
