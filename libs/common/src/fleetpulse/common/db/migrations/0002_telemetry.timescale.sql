-- telemetry on TimescaleDB: a hypertable with daily chunks, compression after 7 days, retention
-- of 90 days and a continuous aggregate for hourly counts. Reviewed against the plain variant:
-- same columns, same unique key, same telemetry_hourly(bucket, tenant_id, device_id, readings).
CREATE TABLE telemetry (
    time         timestamptz NOT NULL,
    tenant_id    text        NOT NULL,
    device_id    text        NOT NULL,
    seq          bigint,
    metrics      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_key UNIQUE (tenant_id, device_id, time)
);
SELECT create_hypertable('telemetry', 'time', chunk_time_interval => interval '1 day');
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'tenant_id, device_id',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('telemetry', interval '7 days');
SELECT add_retention_policy('telemetry', interval '90 days');

-- Kept so callers need not know which variant runs; partitions are Timescale's chunks here.
CREATE FUNCTION fleetpulse_ensure_telemetry_partitions(days_back int, days_ahead int)
RETURNS int LANGUAGE sql AS $$ SELECT 0 $$;
CREATE FUNCTION fleetpulse_drop_telemetry_partitions(keep_days int)
RETURNS int LANGUAGE sql AS $$ SELECT count(*)::int FROM drop_chunks('telemetry', make_interval(days => keep_days)) $$;

CREATE MATERIALIZED VIEW telemetry_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(interval '1 hour', time) AS bucket, tenant_id, device_id, count(*) AS readings
    FROM telemetry GROUP BY 1, 2, 3 WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => interval '3 hours', end_offset => interval '1 minute',
    schedule_interval => interval '5 minutes');

CREATE FUNCTION fleetpulse_refresh_telemetry_hourly(since timestamptz)
RETURNS void LANGUAGE sql AS $$ SELECT 1 $$;
