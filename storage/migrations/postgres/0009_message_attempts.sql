-- Every attempt of a message, for the console's message page (storage/sql/console.py): the
-- messages row keeps only the last attempt's answer. Triggers write them, so no write path of
-- the outbox changes. An attempt ends when its message leaves 'sending': with the platform's
-- answer (finish_attempt sets platform_code, even to NULL) or without one (a worker that died
-- mid-call: the row is abandoned as unknown, its codes still the previous attempt's).
-- started_at is when the attempt began (the row's updated_at while 'sending'); status is what it
-- left the message in: sent, queued (to be retried), failed or unknown.
CREATE TABLE message_attempts (
    message_id    TEXT COLLATE "C" NOT NULL,
    number        INTEGER NOT NULL,  -- 1 for the first attempt, as messages.attempts counts
    started_at    BIGINT,            -- NULL: recorded from the row when 0009 was applied
    finished_at   BIGINT,
    status        TEXT COLLATE "C" NOT NULL,
    platform_code TEXT,
    platform_msg  TEXT,
    sub_code      TEXT,
    sub_msg       TEXT,
    error         TEXT,
    PRIMARY KEY (message_id, number)
);

-- PostgreSQL fires an UPDATE OF trigger when the column is a target of the UPDATE, whatever
-- its value: the answered one replaces what the other may have written first (triggers fire
-- in name order, but neither relies on it), the other never replaces.
CREATE FUNCTION subgate_message_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'answered' THEN
        INSERT INTO message_attempts (message_id, number, started_at, finished_at, status,
            platform_code, platform_msg, sub_code, sub_msg, error)
        VALUES (NEW.id, NEW.attempts, OLD.updated_at, NEW.updated_at, NEW.status,
            NEW.platform_code, NEW.platform_msg, NEW.sub_code, NEW.sub_msg, NEW.last_error)
        ON CONFLICT (message_id, number) DO UPDATE SET status = excluded.status,
            platform_code = excluded.platform_code, platform_msg = excluded.platform_msg,
            sub_code = excluded.sub_code, sub_msg = excluded.sub_msg, error = excluded.error;
    ELSE
        INSERT INTO message_attempts (message_id, number, started_at, finished_at, status, error)
        VALUES (NEW.id, NEW.attempts, OLD.updated_at, NEW.updated_at, NEW.status, NEW.last_error)
        ON CONFLICT (message_id, number) DO NOTHING;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER message_attempt_answered AFTER UPDATE OF platform_code ON messages
    FOR EACH ROW WHEN (OLD.status = 'sending' AND NEW.status <> 'sending')
    EXECUTE FUNCTION subgate_message_attempt('answered');
CREATE TRIGGER message_attempt_ended AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN (OLD.status = 'sending' AND NEW.status <> 'sending')
    EXECUTE FUNCTION subgate_message_attempt('ended');

-- Messages from before: the last finished attempt is what their row still shows. A settled
-- message's row was updated by the settle, so its attempt's end is not known.
INSERT INTO message_attempts (message_id, number, finished_at, status, platform_code,
    platform_msg, sub_code, sub_msg, error)
SELECT id, CASE WHEN status = 'sending' THEN attempts - 1 ELSE attempts END,
    CASE WHEN status IN ('queued', 'sent', 'failed', 'unknown') THEN updated_at END,
    CASE WHEN status = 'sending' THEN 'queued'
        WHEN status IN ('settled_delivered', 'settled_not_delivered') THEN 'unknown'
        ELSE status END,
    platform_code, platform_msg, sub_code, sub_msg, last_error
FROM messages
WHERE status <> 'pending' AND (attempts > 1 OR (attempts = 1 AND status <> 'sending'));
