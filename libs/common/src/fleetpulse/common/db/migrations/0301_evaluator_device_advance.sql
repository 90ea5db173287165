-- evaluator: a batch locks, reads and advances its devices' watermarks in one statement
-- (INSERT ... ON CONFLICT DO UPDATE SET prev_seen = last_seen, last_seen = greatest(...)
-- RETURNING prev_seen). No index on last_seen, so those updates stay HOT.
ALTER TABLE evaluator_devices ADD COLUMN prev_seen timestamptz;
DROP INDEX evaluator_devices_last_seen;
