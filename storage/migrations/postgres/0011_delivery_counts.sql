-- Each destination's backlog (pending, failing: pending after a failed attempt, dead), read by
-- GET /v1/destinations, /metrics before each scrape and the console: counting it from the
-- deliveries table read the whole backlog each time. Triggers keep the totals as deliveries are
-- made, change status or attempts, and (were they ever) deleted, so no write path changes; a
-- lease, which changes neither, costs nothing. A total that falls to 0 keeps its row.
-- Each total is spread over 16 rows (by the delivery's id), summed when read, so that replicas
-- finishing deliveries of one destination do not queue on one row until their commits; a change
-- takes its rows in state order, so two changes never wait for each other in a circle.
CREATE TABLE delivery_counts (
    destination TEXT COLLATE "C" NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,  -- pending, failing, dead
    shard       SMALLINT NOT NULL,
    count       BIGINT   NOT NULL,
    PRIMARY KEY (destination, state, shard)
);

INSERT INTO delivery_counts (destination, state, shard, count)
SELECT destination, 'pending', 0, count(*) FROM deliveries WHERE status = 'pending' GROUP BY 1
UNION ALL
SELECT destination, 'failing', 0, count(*) FROM deliveries WHERE status = 'pending' AND attempts > 0
GROUP BY 1
UNION ALL
SELECT destination, 'dead', 0, count(*) FROM deliveries WHERE status = 'dead' GROUP BY 1;

CREATE FUNCTION subgate_delivery_states(status TEXT, attempts INTEGER) RETURNS TEXT[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT array_remove(ARRAY[
        CASE WHEN status = 'dead' THEN 'dead' END,
        CASE WHEN status = 'pending' AND attempts > 0 THEN 'failing' END,
        CASE WHEN status = 'pending' THEN 'pending' END], NULL)
$$;

CREATE FUNCTION subgate_delivery_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_counts AS c (destination, state, shard, count)
    SELECT change.destination, change.state, change.shard, sum(change.delta)
    FROM (
        SELECT OLD.destination, unnest(subgate_delivery_states(OLD.status, OLD.attempts)),
            (OLD.id & 15)::smallint, -1
        WHERE TG_OP IN ('UPDATE', 'DELETE')
        UNION ALL
        SELECT NEW.destination, unnest(subgate_delivery_states(NEW.status, NEW.attempts)),
            (NEW.id & 15)::smallint, 1
        WHERE TG_OP IN ('INSERT', 'UPDATE')
    ) AS change (destination, state, shard, delta)
    GROUP BY change.destination, change.state, change.shard
    HAVING sum(change.delta) <> 0
    ORDER BY change.state
    ON CONFLICT (destination, state, shard) DO UPDATE SET count = c.count + excluded.count;
    RETURN NULL;
END $$;

CREATE TRIGGER delivery_counted AFTER INSERT OR DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION subgate_delivery_counts();
CREATE TRIGGER delivery_recounted AFTER UPDATE OF status, attempts ON deliveries
    FOR EACH ROW WHEN (NEW.status IS DISTINCT FROM OLD.status
        OR (NEW.attempts > 0) IS DISTINCT FROM (OLD.attempts > 0))
    EXECUTE FUNCTION subgate_delivery_counts();

-- The oldest waiting delivery, and the latest failure (its error): each one index entry away.
CREATE INDEX deliveries_pending_age ON deliveries (destination, created_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_failed ON deliveries (destination, updated_at, id)
    WHERE status = 'dead' OR (status = 'pending' AND attempts > 0);
-- A destination's deliveries in one state, newest first, a page at a time (the console's and
-- GET /v1/destinations/{name}/deliveries): an index walk from the page's start, the attempts
-- filter ("failing") read from the index.
CREATE INDEX deliveries_by_state ON deliveries (destination, status, id, attempts);
