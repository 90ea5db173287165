-- Per-metric hourly rollup for the API's bucketed queries, and the housekeeping that plain
-- PostgreSQL needs someone to run (ingest calls fleetpulse_telemetry_housekeeping every few
-- minutes, one replica at a time): retention by partition and both hourly rollups.
--
-- telemetry_metrics_hourly holds min/max/sum/count of every number or boolean (1/0) metric per
-- device and UTC hour; sum is numeric, so sums of large readings (1e308) do not overflow. Hours
-- before telemetry_rollup_state.complete_before are rolled up; later ones are read raw. A late
-- reading (received up to the ingest retention window after its time) marks its hour for the
-- next refresh through received_at, so the rollup of any hour is at most one refresh behind.
CREATE TABLE telemetry_metrics_hourly (
    tenant_id  text             NOT NULL,
    device_id  text             NOT NULL,
    metric     text             NOT NULL,
    bucket     timestamptz      NOT NULL,
    min        double precision NOT NULL,
    max        double precision NOT NULL,
    sum        numeric          NOT NULL,
    count      bigint           NOT NULL,
    PRIMARY KEY (tenant_id, device_id, metric, bucket)
);

CREATE TABLE telemetry_rollup_state (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    complete_before  timestamptz NOT NULL,  -- every hour before this is rolled up
    received_from    timestamptz NOT NULL   -- readings received since then are not yet
);
INSERT INTO telemetry_rollup_state VALUES (true, '-infinity', '-infinity');

-- time and received_at grow with the physical order of each partition: BRIN indexes find the
-- newly complete hours and the readings received since the last refresh for a few index pages.
CREATE INDEX telemetry_time_brin ON telemetry USING brin (time);
CREATE INDEX telemetry_received_brin ON telemetry USING brin (received_at);

CREATE FUNCTION fleetpulse_telemetry_rollup_complete_before() RETURNS timestamptz
LANGUAGE sql STABLE AS $$ SELECT complete_before FROM telemetry_rollup_state $$;

-- Recompute every (tenant, device, hour) with readings in newly complete hours or received since
-- the last run; ``settle`` covers batches committed a while after they were received. Returns
-- the number of device-hours recomputed.
CREATE FUNCTION fleetpulse_refresh_telemetry_rollups(settle interval DEFAULT interval '15 minutes')
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    state telemetry_rollup_state;
    horizon timestamptz := date_trunc('hour', now() - settle);
    groups int;
BEGIN
    SELECT * INTO state FROM telemetry_rollup_state FOR UPDATE;
    DROP TABLE IF EXISTS pg_temp.fleetpulse_dirty_hours;
    CREATE TEMP TABLE fleetpulse_dirty_hours ON COMMIT DROP AS
        SELECT tenant_id, device_id, date_trunc('hour', time) AS bucket
        FROM telemetry WHERE time >= state.complete_before AND time < horizon
        UNION
        SELECT tenant_id, device_id, date_trunc('hour', time) AS bucket
        FROM telemetry WHERE received_at >= state.received_from AND time < horizon;
    GET DIAGNOSTICS groups = ROW_COUNT;

    INSERT INTO telemetry_metrics_hourly AS h
        (tenant_id, device_id, metric, bucket, min, max, sum, count)
    SELECT d.tenant_id, d.device_id, m.key, d.bucket, min(x.v), max(x.v), sum(x.v::numeric), count(*)
    FROM fleetpulse_dirty_hours d
    JOIN telemetry t ON t.tenant_id = d.tenant_id AND t.device_id = d.device_id
                    AND t.time >= d.bucket AND t.time < d.bucket + interval '1 hour'
    CROSS JOIN LATERAL jsonb_each(t.metrics) AS m
    CROSS JOIN LATERAL (SELECT CASE jsonb_typeof(m.value)
                                   WHEN 'number' THEN (m.value)::double precision
                                   WHEN 'boolean' THEN CASE WHEN (m.value)::boolean THEN 1.0 ELSE 0.0 END
                               END AS v) AS x
    WHERE x.v IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, device_id, metric, bucket) DO UPDATE
        SET min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, count = EXCLUDED.count;

    INSERT INTO telemetry_hourly (bucket, tenant_id, device_id, readings)
    SELECT d.bucket, d.tenant_id, d.device_id, count(*)
    FROM fleetpulse_dirty_hours d
    JOIN telemetry t ON t.tenant_id = d.tenant_id AND t.device_id = d.device_id
                    AND t.time >= d.bucket AND t.time < d.bucket + interval '1 hour'
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, device_id, bucket) DO UPDATE SET readings = EXCLUDED.readings;

    UPDATE telemetry_rollup_state
       SET complete_before = GREATEST(complete_before, horizon), received_from = now() - settle;
    DROP TABLE fleetpulse_dirty_hours;
    RETURN groups;
END $$;

-- One housekeeping call: drop partitions older than keep_days, refresh the rollups. Returns
-- {"dropped_partitions": n, "rolled_up_device_hours": n}.
CREATE FUNCTION fleetpulse_telemetry_housekeeping(keep_days int)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object(
        'dropped_partitions', fleetpulse_drop_telemetry_partitions(keep_days),
        'rolled_up_device_hours', fleetpulse_refresh_telemetry_rollups())
$$;
