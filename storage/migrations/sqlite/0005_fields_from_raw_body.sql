-- The decoded fields are derived from raw_body and charset on read (verify.form.parse_form is
-- deterministic), so storing them as JSON as well doubled the row and cost a JSON encode on the
-- intake hot path. raw_body stays the single source of truth.
ALTER TABLE notifications DROP COLUMN fields;
