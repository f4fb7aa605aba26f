-- Each app's messages by channel and status, for the console's overview (storage/sql/console.py):
-- counting them from the messages table reads every message of the app. Triggers keep the
-- totals as messages are made, change status and (were they ever) deleted, so no write path of
-- the outbox changes. A total that falls to 0 keeps its row.
-- Each total is spread over 16 rows (by the message id's hash), summed when read: one row per
-- total would be locked by every concurrent send of the app until its commit, one after the
-- other. A status change takes its two rows in status order, so two changes never wait for
-- each other in a circle.
CREATE TABLE message_counts (
    app_id  TEXT COLLATE "C" NOT NULL,
    channel TEXT COLLATE "C" NOT NULL,
    status  TEXT COLLATE "C" NOT NULL,
    shard   SMALLINT NOT NULL,
    count   BIGINT   NOT NULL,
    PRIMARY KEY (app_id, channel, status, shard)
);

INSERT INTO message_counts (app_id, channel, status, shard, count)
SELECT app_id, channel, status, 0, count(*) FROM messages GROUP BY 1, 2, 3;

CREATE FUNCTION subgate_message_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_counts AS c (app_id, channel, status, shard, count)
    SELECT change.app_id, change.channel, change.status, change.shard, change.delta
    FROM (
        SELECT OLD.app_id, OLD.channel, OLD.status, hashtext(OLD.id) & 15 AS shard, -1 AS delta
        WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION ALL
        SELECT NEW.app_id, NEW.channel, NEW.status, hashtext(NEW.id) & 15, 1
        WHERE TG_OP IN ('INSERT', 'UPDATE')
    ) AS change (app_id, channel, status, shard, delta)
    ORDER BY change.status
    ON CONFLICT (app_id, channel, status, shard) DO UPDATE SET count = c.count + excluded.count;
    RETURN NULL;
END $$;

CREATE TRIGGER message_counted AFTER INSERT OR DELETE ON messages
    FOR EACH ROW EXECUTE FUNCTION subgate_message_counts();
CREATE TRIGGER message_recounted AFTER UPDATE OF status ON messages
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION subgate_message_counts();
