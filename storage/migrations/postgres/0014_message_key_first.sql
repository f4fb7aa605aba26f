-- A send's reservation looks its idempotency key up first (storage/postgres/reservations.py): a
-- replay is answered from the message stored under it. messages_once led with app_id, as do the
-- console's indexes (0004_message_recipients.sql, 0008_console.sql), so every one of them could
-- serve that lookup from its app_id alone, and on a table planned while nearly empty (a new
-- schema: every estimate is one row) PostgreSQL could pick any of them. A connection keeps the
-- plan it makes there, and messages_of_user read every message of the app, filtering by key, at
-- each reservation. Led by the key, messages_once is the only index the lookup can use (it
-- compares app_id in a form no index serves); the constraint is the same set of columns, so
-- ON CONFLICT (app_id, idempotency_key) still infers it.
ALTER TABLE messages DROP CONSTRAINT messages_once;
ALTER TABLE messages ADD CONSTRAINT messages_once UNIQUE (idempotency_key, app_id);
