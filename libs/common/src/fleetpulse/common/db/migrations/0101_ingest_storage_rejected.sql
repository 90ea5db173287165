-- Ingest (0101): a new quarantine reason, STORAGE_REJECTED, for a message whose rows PostgreSQL
-- refused for a permanent reason (a data exception or a violated constraint): ingest isolates it
-- from its batch, quarantines it with this reason, and goes on. NOT VALID + VALIDATE keeps the
-- table writable while the existing rows are checked.
ALTER TABLE quarantine DROP CONSTRAINT IF EXISTS quarantine_reason_check;
ALTER TABLE quarantine ADD CONSTRAINT quarantine_reason_check CHECK (reason IN (
    'BAD_TOPIC', 'PAYLOAD_TOO_LARGE', 'BAD_JSON', 'SCHEMA_INVALID', 'UNKNOWN_DEVICE',
    'DEVICE_DECOMMISSIONED', 'RATE_LIMITED', 'TIMESTAMP_OUT_OF_RANGE', 'STORAGE_REJECTED'))
    NOT VALID;
ALTER TABLE quarantine VALIDATE CONSTRAINT quarantine_reason_check;
