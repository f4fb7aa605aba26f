-- The periodic reconciliation walks the users holding open mini-program consent in key order,
-- users_per_run at a time, from where the last run stopped (storage/sql/reconcile_walk.py,
-- docs/reconciliation.md). It took the least recently changed first, by updated_at: a sync that
-- changes nothing does not touch updated_at, so every run took the same users and the others
-- were never reconciled; and each run grouped every consent of the ledger to find them.
--
-- Each run reads a range of this index, which holds the open mini-program keys only: the read's
-- WHERE (storage/sql/reconcile.py) repeats this one, so the planner can prove it implies it.
--
-- What it locks: CREATE INDEX takes a SHARE lock on consents for the whole build, in this
-- migration's transaction. Reads (lookups, sends' reads) go on; every write to consents (a
-- consent event, a reservation's spend, a refund) waits until the build commits, and one that
-- waits longer than the store's lock timeout (storage.busy_timeout_ms, 5 s by default) fails
-- with 503 and is retried by its caller. The build reads the whole table once and sorts only
-- the open mini-program keys. Not CONCURRENTLY: that cannot run in a transaction, and it would
-- wait for the snapshot of every other process starting meanwhile, which waits in turn for this
-- migration's advisory lock (storage/postgres/migrate.py). On a ledger too large to hold its
-- writes for one build, build the index beforehand, with the same name and definition, outside
-- any transaction:
--     CREATE INDEX CONCURRENTLY consents_open_mini_program ON consents (app_id, user_id)
--     WHERE channel = 'mini_template' AND (credits > 0 OR status = 'subscribed');
-- (if it fails, it leaves an invalid index: DROP INDEX CONCURRENTLY it and build it again). This
-- migration then finds it and builds nothing; its SHARE lock lasts only its own short commit.
CREATE INDEX IF NOT EXISTS consents_open_mini_program ON consents (app_id, user_id)
WHERE channel = 'mini_template' AND (credits > 0 OR status = 'subscribed');

-- Where the walk is: the last (app, user) a run took ('', '' before the first run, which the
-- first run's read starts after), and how many times it moved. A run moves it only from the
-- value it read (compare and set on moves), so two replicas running at once never take the same
-- users: the walk is one for every process of the database.
CREATE TABLE reconcile_cursor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    app_id  TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    moves   BIGINT  NOT NULL
);
INSERT INTO reconcile_cursor (id, app_id, user_id, moves) VALUES (1, '', '', 0);
