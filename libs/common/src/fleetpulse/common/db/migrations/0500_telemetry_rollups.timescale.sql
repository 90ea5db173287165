-- Per-metric hourly rollup for the API's bucketed queries, as a continuous aggregate that
-- Timescale refreshes itself; retention (90 days) and compression (7 days) are Timescale jobs
-- from 0002, so fleetpulse_telemetry_housekeeping has nothing to do here. Same names and columns
-- as the plain variant: telemetry_metrics_hourly(tenant_id, device_id, metric, bucket, min, max,
-- sum numeric, count).
--
-- Real-time aggregation (materialized_only = false) answers the hours not yet materialized from
-- the raw rows, so every whole hour can be read from the rollup. The refresh windows reach back
-- 32 days: readings are accepted up to 30 days late (FLEETPULSE_RETENTION_DAYS), and a late
-- reading is only folded into an hour that a refresh window covers; 0002's 3-hour window for
-- telemetry_hourly is widened to match.
CREATE MATERIALIZED VIEW telemetry_metrics_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT t.tenant_id, t.device_id, m.key AS metric,
           time_bucket(interval '1 hour', t.time) AS bucket,
           min(CASE jsonb_typeof(m.value)
                   WHEN 'number' THEN (m.value)::double precision
                   ELSE CASE WHEN (m.value)::boolean THEN 1.0 ELSE 0.0 END END) AS min,
           max(CASE jsonb_typeof(m.value)
                   WHEN 'number' THEN (m.value)::double precision
                   ELSE CASE WHEN (m.value)::boolean THEN 1.0 ELSE 0.0 END END) AS max,
           sum(CASE jsonb_typeof(m.value)
                   WHEN 'number' THEN (m.value)::double precision
                   ELSE CASE WHEN (m.value)::boolean THEN 1.0 ELSE 0.0 END END::numeric) AS sum,
           count(*) AS count
    FROM telemetry t, jsonb_each(t.metrics) AS m
    WHERE jsonb_typeof(m.value) IN ('number', 'boolean')
    GROUP BY 1, 2, 3, 4
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_metrics_hourly',
    start_offset => interval '32 days', end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes');

SELECT remove_continuous_aggregate_policy('telemetry_hourly');
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => interval '32 days', end_offset => interval '1 minute',
    schedule_interval => interval '15 minutes');

CREATE FUNCTION fleetpulse_telemetry_rollup_complete_before() RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT 'infinity'::timestamptz $$;

CREATE FUNCTION fleetpulse_refresh_telemetry_rollups(settle interval DEFAULT interval '15 minutes')
RETURNS int LANGUAGE sql AS $$ SELECT 0 $$;

CREATE FUNCTION fleetpulse_telemetry_housekeeping(keep_days int)
RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
