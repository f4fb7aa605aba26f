-- Each destination's backlog (pending, failing: pending after a failed attempt, dead), read by
-- GET /v1/destinations, /metrics before each scrape and the console: counting it from the
-- deliveries table read the whole backlog each time. Triggers keep the totals as deliveries are
-- made, change status or attempts, and (were they ever) deleted, so no write path changes; a
-- lease, which changes neither, costs nothing. A total that falls to 0 keeps its row.
CREATE TABLE delivery_counts (
    destination TEXT    NOT NULL,
    state       TEXT    NOT NULL,  -- pending, failing, dead
    count       INTEGER NOT NULL,
    PRIMARY KEY (destination, state)
)
WITHOUT ROWID;

INSERT INTO delivery_counts (destination, state, count)
SELECT destination, 'pending', count(*) FROM deliveries WHERE status = 'pending' GROUP BY 1
UNION ALL
SELECT destination, 'failing', count(*) FROM deliveries WHERE status = 'pending' AND attempts > 0
GROUP BY 1
UNION ALL
SELECT destination, 'dead', count(*) FROM deliveries WHERE status = 'dead' GROUP BY 1;

CREATE TRIGGER delivery_counted AFTER INSERT ON deliveries BEGIN
    INSERT INTO delivery_counts (destination, state, count)
    SELECT NEW.destination, s.column1, 1 FROM (VALUES ('pending'), ('failing'), ('dead')) AS s
    WHERE (s.column1 = 'pending' AND NEW.status = 'pending')
        OR (s.column1 = 'failing' AND NEW.status = 'pending' AND NEW.attempts > 0)
        OR (s.column1 = 'dead' AND NEW.status = 'dead')
    ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER delivery_recounted AFTER UPDATE OF status, attempts ON deliveries
WHEN NEW.status IS NOT OLD.status OR (NEW.attempts > 0) IS NOT (OLD.attempts > 0) BEGIN
    UPDATE delivery_counts SET count = count - 1
    WHERE destination = OLD.destination AND (
        (state = 'pending' AND OLD.status = 'pending')
        OR (state = 'failing' AND OLD.status = 'pending' AND OLD.attempts > 0)
        OR (state = 'dead' AND OLD.status = 'dead'));
    INSERT INTO delivery_counts (destination, state, count)
    SELECT NEW.destination, s.column1, 1 FROM (VALUES ('pending'), ('failing'), ('dead')) AS s
    WHERE (s.column1 = 'pending' AND NEW.status = 'pending')
        OR (s.column1 = 'failing' AND NEW.status = 'pending' AND NEW.attempts > 0)
        OR (s.column1 = 'dead' AND NEW.status = 'dead')
    ON CONFLICT (destination, state) DO UPDATE SET count = count + 1;
END;

CREATE TRIGGER delivery_uncounted AFTER DELETE ON deliveries BEGIN
    UPDATE delivery_counts SET count = count - 1
    WHERE destination = OLD.destination AND (
        (state = 'pending' AND OLD.status = 'pending')
        OR (state = 'failing' AND OLD.status = 'pending' AND OLD.attempts > 0)
        OR (state = 'dead' AND OLD.status = 'dead'));
END;

-- The oldest waiting delivery, and the latest failure (its error): each one index entry away.
CREATE INDEX deliveries_pending_age ON deliveries (destination, created_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_failed ON deliveries (destination, updated_at, id)
    WHERE status = 'dead' OR (status = 'pending' AND attempts > 0);
-- A destination's deliveries in one state, newest first, a page at a time (the console's and
-- GET /v1/destinations/{name}/deliveries): an index walk from the page's start, the attempts
-- filter ("failing") read from the index.
CREATE INDEX deliveries_by_state ON deliveries (destination, status, id, attempts);
