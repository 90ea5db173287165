-- Ingest (0100-0199): per-minute quarantine ledger. Every quarantined message is counted here
-- (stored = has a row in quarantine, suppressed = only counted, beyond the per-minute row cap),
-- so a flood of garbage or rate-limited messages costs one row per minute, tenant and reason.
CREATE TABLE quarantine_counts (
    minute      timestamptz NOT NULL,
    tenant_id   text        NOT NULL DEFAULT '',
    reason      text        NOT NULL,
    stored      bigint      NOT NULL DEFAULT 0,
    suppressed  bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, tenant_id, reason)
);
CREATE INDEX quarantine_counts_tenant ON quarantine_counts (tenant_id, minute DESC);

-- Ingest's counted duplicates (redelivered readings already stored), per minute.
CREATE TABLE ingest_duplicate_counts (
    minute      timestamptz NOT NULL PRIMARY KEY,
    duplicates  bigint      NOT NULL DEFAULT 0
);

-- Epoch microseconds -> timestamptz, exact (ingest sends times as bigint arrays). Inlined by the planner.
CREATE FUNCTION fleetpulse_ts_us(us bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'epoch'::timestamptz + us * interval '1 microsecond' $$;
