-- The delivery totals (0011) are kept by the statements that change deliveries
-- (storage/sqlite/delivery_counts.py), not by row triggers: SQLite runs a trigger once per row,
-- and it cost each delivery the fan-out made as much as inserting the row. The totals stand as
-- the triggers left them.
DROP TRIGGER delivery_counted;
DROP TRIGGER delivery_recounted;
DROP TRIGGER delivery_uncounted;
