-- A key's saved state names the log entry whose append saved it (changed_by), and the
-- consent.changed trigger reads that entry by its primary key. It used to look the entry up as
-- the key's newest (ORDER BY id DESC LIMIT 1), a plan PostgreSQL chose from statistics: on a log
-- grown since its last ANALYZE it could pick consent_events_by_action and read every entry of
-- the app for each change. Every writer sets changed_by with the state it saves; a row saved
-- without it (a new key's empty row) is no change and makes no event, as before.
ALTER TABLE consents ADD COLUMN changed_by BIGINT;

DROP TRIGGER consent_changed ON consents;

CREATE OR REPLACE FUNCTION subgate_consent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (type, app_id, user_id, data, created_at)
    SELECT 'consent.changed', NEW.app_id, NEW.user_id,
        json_build_object('channel', NEW.channel, 'template_id', NEW.template_id,
            'status', NEW.status, 'credits', NEW.credits, 'action', e.action,
            'source', e.source, 'occurred_at', e.occurred_at, 'sequence', e.id)::text,
        e.recorded_at
    FROM consent_events AS e
    WHERE e.id = NEW.changed_by;
    RETURN NULL;
END $$;

CREATE TRIGGER consent_changed AFTER INSERT OR UPDATE ON consents
    FOR EACH ROW WHEN (NEW.changed_by IS NOT NULL) EXECUTE FUNCTION subgate_consent_changed();
