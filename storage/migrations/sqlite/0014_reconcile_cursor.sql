-- The periodic reconciliation walks the users holding open mini-program consent in key order,
-- users_per_run at a time, from where the last run stopped (storage/sql/reconcile_walk.py,
-- docs/reconciliation.md). It took the least recently changed first, by updated_at: a sync that
-- changes nothing does not touch updated_at, so every run took the same users and the others
-- were never reconciled; and each run grouped every consent of the ledger to find them.
--
-- Each run reads a range of this index, which holds the open mini-program keys only: the read's
-- WHERE (storage/sql/reconcile.py) repeats this one, term for term, so SQLite may use it.
-- Building it reads the whole table once, in this migration's transaction: the file's write
-- lock (BEGIN IMMEDIATE) is held until the build ends, so any other writer of the file waits
-- (busy_timeout) while readers go on (WAL). A store migrates when it opens, before it serves.
CREATE INDEX consents_open_mini_program ON consents (app_id, user_id)
WHERE channel = 'mini_template' AND (credits > 0 OR status = 'subscribed');

-- Where the walk is: the last (app, user) a run took ('', '' before the first run, which the
-- first run's read starts after), and how many times it moved. A run moves it only from the
-- value it read (compare and set on moves), so two runs at once never take the same users.
CREATE TABLE reconcile_cursor (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    app_id  TEXT    NOT NULL,
    user_id TEXT    NOT NULL,
    moves   INTEGER NOT NULL
);
INSERT INTO reconcile_cursor (id, app_id, user_id, moves) VALUES (1, '', '', 0);
