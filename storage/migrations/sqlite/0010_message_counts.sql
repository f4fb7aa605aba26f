-- Each app's messages by channel and status, for the console's overview (storage/sql/console.py):
-- counting them from the messages table reads every message of the app. Triggers keep the
-- totals as messages are made, change status and (were they ever) deleted, so no write path of
-- the outbox changes. A total that falls to 0 keeps its row.
CREATE TABLE message_counts (
    app_id  TEXT    NOT NULL,
    channel TEXT    NOT NULL,
    status  TEXT    NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (app_id, channel, status)
)
WITHOUT ROWID;

INSERT INTO message_counts (app_id, channel, status, count)
SELECT app_id, channel, status, count(*) FROM messages GROUP BY 1, 2, 3;

CREATE TRIGGER message_counted AFTER INSERT ON messages BEGIN
    INSERT INTO message_counts (app_id, channel, status, count)
    VALUES (NEW.app_id, NEW.channel, NEW.status, 1)
    ON CONFLICT (app_id, channel, status) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER message_recounted AFTER UPDATE OF status ON messages
WHEN NEW.status IS NOT OLD.status BEGIN
    UPDATE message_counts SET count = count - 1
    WHERE app_id = OLD.app_id AND channel = OLD.channel AND status = OLD.status;
    INSERT INTO message_counts (app_id, channel, status, count)
    VALUES (NEW.app_id, NEW.channel, NEW.status, 1)
    ON CONFLICT (app_id, channel, status) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER message_uncounted AFTER DELETE ON messages BEGIN
    UPDATE message_counts SET count = count - 1
    WHERE app_id = OLD.app_id AND channel = OLD.channel AND status = OLD.status;
END;
