-- Telemetry layout for half the database CPU and fewer bytes per reading (issue 17). TimescaleDB
-- variant; reviewed against the plain one (0700_telemetry_layout.postgres.sql): same tables,
-- columns, functions, view and trigger. It differs in storage (a hypertable with compression and
-- retention jobs instead of daily partitions) and in the rollups (continuous aggregates on the
-- keys, with views of the old names and columns instead of tables refreshed by housekeeping).
--
-- Why: a row of the old `telemetry` carried two text ids (in the row, in its unique index and in
-- every compressed segment) and a jsonb parsed per row. Now a device is an int key (assigned at
-- registration, or on its first stored reading), metric names are interned ids, values a float8
-- array in the payload's order, and the unique key is (device_key, time): ingest writes it with
-- binary COPY, no text comparison and no jsonb parse. Readers that want the old shape use the
-- `telemetry` view.
--
-- The functions below up to telemetry_readings are the plain variant's, word for word: each
-- variant file is complete on its own, and a difference between them would be a bug.

-- A device's key is never deleted nor reused: history stays attached to its device.
CREATE TABLE device_keys (
    device_key  int  GENERATED ALWAYS AS IDENTITY UNIQUE,
    tenant_id   text NOT NULL,
    device_id   text NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);

-- One id per name and JSON type: a boolean is stored as 1.0/0.0 and read back as a boolean.
CREATE TABLE metric_names (
    metric_id  int     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text    NOT NULL,
    is_bool    boolean NOT NULL,
    UNIQUE (name, is_bool)
);

-- Keys are assigned in sorted order so that concurrent callers lock them in one order.
CREATE FUNCTION fleetpulse_device_keys(tenants text[], devices text[])
RETURNS TABLE (tenant_id text, device_id text, device_key int) LANGUAGE sql AS $$
    INSERT INTO device_keys (tenant_id, device_id)
    SELECT DISTINCT u.t, u.d FROM unnest(tenants, devices) AS u(t, d) ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    SELECT k.tenant_id, k.device_id, k.device_key
    FROM device_keys k JOIN (SELECT DISTINCT * FROM unnest(tenants, devices)) AS u(t, d)
         ON k.tenant_id = u.t AND k.device_id = u.d;
$$;

CREATE FUNCTION fleetpulse_metric_ids(names text[], bools boolean[])
RETURNS TABLE (name text, is_bool boolean, metric_id int) LANGUAGE sql AS $$
    INSERT INTO metric_names (name, is_bool)
    SELECT DISTINCT u.n, u.b FROM unnest(names, bools) AS u(n, b) ORDER BY 1, 2
    ON CONFLICT DO NOTHING;
    SELECT m.name, m.is_bool, m.metric_id
    FROM metric_names m JOIN (SELECT DISTINCT * FROM unnest(names, bools)) AS u(n, b)
         ON m.name = u.n AND m.is_bool = u.b;
$$;

-- A float8 as a JSON number written as a float (1.0, not 1), as ingest stored it before 0700.
CREATE FUNCTION fleetpulse_float8_json(v float8) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v::text ~ '^-?[0-9]+$' THEN (v::text || '.0')::jsonb ELSE to_jsonb(v) END
$$;

-- {"name": number | boolean}: a reading's metrics as the device sent them.
CREATE FUNCTION fleetpulse_metrics_json(ids int[], vals float8[]) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(m.name, CASE WHEN m.is_bool THEN to_jsonb(u.v <> 0)
                                                  ELSE fleetpulse_float8_json(u.v) END),
                    '{}'::jsonb)
    FROM unnest(ids, vals) AS u(id, v) JOIN metric_names m ON m.metric_id = u.id
$$;

-- A jsonb number as float8, or NULL when it is not a number; 0 below float8's range (what a
-- JSON parser gives the device's value), NULL above it (no float8 holds it).
CREATE FUNCTION fleetpulse_jsonb_float8(value jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(value) = 'boolean' THEN CASE WHEN value::boolean THEN 1.0 ELSE 0.0 END
        WHEN jsonb_typeof(value) <> 'number' THEN NULL
        WHEN abs(value::numeric) > 1.7976931348623157e308 THEN NULL
        WHEN abs(value::numeric) < 2.2250738585072014e-308 THEN 0.0
        ELSE value::float8 END
$$;

-- Old rows are objects (ingest writes nothing else); anything else written by hand moves as {}.
CREATE FUNCTION fleetpulse_jsonb_object(value jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(value) = 'object' THEN value ELSE '{}'::jsonb END
$$;

-- ------------------------------------------------------------------- the hypertable
-- Same chunks, compression (7 days, one segment per device), retention (90 days) as 0002: only
-- the segment key is now the int device key.
CREATE TABLE telemetry_readings (
    time           timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    ingest_xid     bigint      DEFAULT (pg_current_xact_id()::text::bigint),
    seq            bigint,
    device_key     int         NOT NULL,
    metric_ids     int[]       NOT NULL,
    metric_values  float8[]    NOT NULL,
    CONSTRAINT telemetry_readings_key PRIMARY KEY (device_key, time)
);
SELECT create_hypertable('telemetry_readings', 'time', chunk_time_interval => interval '1 day');
ALTER TABLE telemetry_readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'device_key',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('telemetry_readings', interval '7 days');
SELECT add_retention_policy('telemetry_readings', interval '90 days');

-- As 0600: BRIN finds the exporter's ranges in uncompressed chunks (rows land in roughly xid
-- order); compressed chunks are skipped through per-chunk ingest_xid ranges. Enabled before the
-- old rows are copied, so the copied chunks get their ranges too.
CREATE INDEX telemetry_readings_ingest_xid ON telemetry_readings USING brin (ingest_xid);
DO $$
BEGIN
    -- needs timescaledb.enable_chunk_skipping (off by default, a server setting the operator
    -- owns); an optimisation only, so any refusal (GUC off, older TimescaleDB) just logs
    PERFORM enable_chunk_skipping('telemetry_readings', 'ingest_xid');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'chunk skipping unavailable (%): the exporter scans compressed chunks', SQLERRM;
END $$;

-- 0002's body dropped chunks of 'telemetry', which becomes a view below.
CREATE OR REPLACE FUNCTION fleetpulse_drop_telemetry_partitions(keep_days int)
RETURNS int LANGUAGE sql AS $$
    SELECT count(*)::int FROM drop_chunks('telemetry_readings', make_interval(days => keep_days))
$$;
-- fleetpulse_ensure_telemetry_partitions (0: chunks are made on insert),
-- fleetpulse_telemetry_rollup_complete_before ('infinity': the rollups answer every hour in real
-- time), fleetpulse_refresh_telemetry_rollups (0) and fleetpulse_telemetry_housekeeping ('{}':
-- Timescale's jobs do it) never named `telemetry` and stay as 0002/0500 made them.

-- ------------------------------------------------------------ existing rows, then the view
INSERT INTO device_keys (tenant_id, device_id)
SELECT tenant_id, device_id FROM devices
UNION SELECT DISTINCT tenant_id, device_id FROM telemetry
ORDER BY 1, 2;

INSERT INTO metric_names (name, is_bool)
SELECT DISTINCT m.key, jsonb_typeof(m.value) = 'boolean'
FROM telemetry t, jsonb_each(fleetpulse_jsonb_object(t.metrics)) AS m
WHERE jsonb_typeof(m.value) IN ('number', 'boolean')
ORDER BY 1, 2;

-- Reads compressed chunks too (Timescale decompresses them on the fly).
INSERT INTO telemetry_readings
    (time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values)
SELECT t.time, t.received_at, t.ingest_xid, t.seq, k.device_key,
       coalesce(m.ids, '{}'), coalesce(m.vals, '{}')
FROM telemetry t
JOIN device_keys k ON k.tenant_id = t.tenant_id AND k.device_id = t.device_id
CROSS JOIN LATERAL (
    SELECT array_agg(n.metric_id ORDER BY e.ord), array_agg(e.v ORDER BY e.ord)
    FROM (SELECT key, fleetpulse_jsonb_float8(value) AS v, jsonb_typeof(value) = 'boolean' AS b, ord
          FROM jsonb_each(fleetpulse_jsonb_object(t.metrics)) WITH ORDINALITY AS j(key, value, ord)) AS e
    JOIN metric_names n ON n.name = e.key AND n.is_bool = e.b
    WHERE e.v IS NOT NULL
) AS m(ids, vals);

-- The old rows past the compression horizon were compressed; compress their copies now rather
-- than hold up to 90 days uncompressed until the policy's next run.
SELECT count(compress_chunk(c, if_not_compressed => true))
FROM show_chunks('telemetry_readings', older_than => interval '7 days') AS c;

-- The caggs depend on the table; dropping them drops their refresh policies, and dropping the
-- hypertable its chunks and its compression and retention jobs.
DROP MATERIALIZED VIEW telemetry_metrics_hourly;
DROP MATERIALIZED VIEW telemetry_hourly;
DROP TABLE telemetry;

CREATE VIEW telemetry AS
SELECT r.time, k.tenant_id, k.device_id, r.seq,
       fleetpulse_metrics_json(r.metric_ids, r.metric_values) AS metrics,
       r.received_at, r.ingest_xid
FROM telemetry_readings r JOIN device_keys k ON k.device_key = r.device_key;
ALTER VIEW telemetry ALTER COLUMN received_at SET DEFAULT now();
ALTER VIEW telemetry ALTER COLUMN ingest_xid SET DEFAULT (pg_current_xact_id()::text::bigint);

-- Writes through the view (tools, tests, a hand-written bridge) keep the old contract: first
-- stored wins on (tenant, device, time); a value that is not a number or boolean within float8
-- is refused, naming the metric.
CREATE FUNCTION fleetpulse_telemetry_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad text;
    key int;
    ids int[];
    vals float8[];
BEGIN
    SELECT e.key INTO bad FROM jsonb_each(NEW.metrics) AS e
    WHERE fleetpulse_jsonb_float8(e.value) IS NULL LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'telemetry metric "%" is not a number or boolean within float8 range', bad
            USING ERRCODE = '22023';
    END IF;
    SELECT k.device_key INTO key
    FROM fleetpulse_device_keys(ARRAY[NEW.tenant_id], ARRAY[NEW.device_id]) AS k;
    PERFORM fleetpulse_metric_ids(array_agg(e.key), array_agg(jsonb_typeof(e.value) = 'boolean'))
    FROM jsonb_each(NEW.metrics) AS e;
    SELECT array_agg(n.metric_id ORDER BY e.ord), array_agg(fleetpulse_jsonb_float8(e.value) ORDER BY e.ord)
    INTO ids, vals
    FROM jsonb_each(NEW.metrics) WITH ORDINALITY AS e(key, value, ord)
    JOIN metric_names n ON n.name = e.key AND n.is_bool = (jsonb_typeof(e.value) = 'boolean');
    INSERT INTO telemetry_readings (time, received_at, ingest_xid, seq, device_key, metric_ids, metric_values)
    VALUES (NEW.time, coalesce(NEW.received_at, now()),
            coalesce(NEW.ingest_xid, pg_current_xact_id()::text::bigint), NEW.seq, key,
            coalesce(ids, '{}'), coalesce(vals, '{}'))
    ON CONFLICT (device_key, time) DO NOTHING;
    IF NOT FOUND THEN
        RETURN NULL;  -- not inserted: the command tag counts it out, as ON CONFLICT did
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER telemetry_insert INSTEAD OF INSERT ON telemetry
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_telemetry_insert();

-- A device gets its key at registration, outside ingest's hot path.
CREATE FUNCTION fleetpulse_assign_device_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO device_keys (tenant_id, device_id) VALUES (NEW.tenant_id, NEW.device_id)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER devices_assign_key AFTER INSERT ON devices
    FOR EACH ROW EXECUTE FUNCTION fleetpulse_assign_device_key();

-- ------------------------------------------------------------------------------- rollups
-- Continuous aggregates on the keys: int group keys keep the materialized rows small, and the
-- views below join the names at read time. Real-time, with 0500's windows: 32 days back, because
-- readings are accepted up to 30 days late and a late one is folded in only while a refresh
-- window covers its hour.
CREATE MATERIALIZED VIEW telemetry_hourly_by_key
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT time_bucket(interval '1 hour', time) AS bucket, device_key, count(*) AS readings
    FROM telemetry_readings GROUP BY 1, 2
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly_by_key',
    start_offset => interval '32 days', end_offset => interval '1 minute',
    schedule_interval => interval '15 minutes');

-- sum is numeric, so sums of large readings (1e308) do not overflow.
CREATE MATERIALIZED VIEW telemetry_metrics_hourly_by_key
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
    SELECT r.device_key, u.metric_id, time_bucket(interval '1 hour', r.time) AS bucket,
           min(u.v) AS min, max(u.v) AS max, sum(u.v::numeric) AS sum, count(*) AS count
    FROM telemetry_readings r, unnest(r.metric_ids, r.metric_values) AS u(metric_id, v)
    GROUP BY 1, 2, 3
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_metrics_hourly_by_key',
    start_offset => interval '32 days', end_offset => interval '1 hour',
    schedule_interval => interval '15 minutes');

-- The old names and columns for the API and tools. LATERAL, so that a query for one device
-- reaches both halves of the real-time aggregate with that device's key: with a plain join the
-- not yet materialized half would aggregate the raw rows of every device and only then join.
CREATE VIEW telemetry_hourly AS
SELECT h.bucket, k.tenant_id, k.device_id, h.readings
FROM device_keys k
CROSS JOIN LATERAL (
    -- one row per hour already: the GROUP BY keeps the subquery (and the key inside it) from
    -- being flattened into a join, and unlike OFFSET 0 lets a filter on bucket reach the cagg
    SELECT c.bucket, sum(c.readings)::bigint AS readings
    FROM telemetry_hourly_by_key c WHERE c.device_key = k.device_key
    GROUP BY c.bucket
) AS h;

-- A name sent both as a number and as a boolean has two ids; the old rollup had one row per
-- name, so the view folds them together.
CREATE VIEW telemetry_metrics_hourly AS
SELECT k.tenant_id, k.device_id, h.metric, h.bucket, h.min, h.max, h.sum, h.count
FROM device_keys k
CROSS JOIN LATERAL (
    SELECT n.name AS metric, c.bucket, min(c.min) AS min, max(c.max) AS max, sum(c.sum) AS sum,
           sum(c.count)::bigint AS count
    FROM telemetry_metrics_hourly_by_key c JOIN metric_names n ON n.metric_id = c.metric_id
    WHERE c.device_key = k.device_key
    GROUP BY n.name, c.bucket
) AS h;

-- The caggs start empty, and a refresh policy never looks further back than 32 days: once it
-- has run, real-time aggregation only covers hours after what it materialized, so the copied
-- history older than that would drop out of the rollups. A refresh cannot run inside this
-- migration's transaction, so a one-off job materializes the whole history instead (the
-- scheduler starts it right after the migration commits) and then deletes itself. Should a
-- policy run come first, hours older than 32 days are missing from the rollups until it has run.
CREATE PROCEDURE fleetpulse_backfill_telemetry_rollups(job_id int, config jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    CALL refresh_continuous_aggregate('telemetry_hourly_by_key', NULL, now() - interval '1 minute');
    COMMIT;
    CALL refresh_continuous_aggregate('telemetry_metrics_hourly_by_key', NULL, now() - interval '1 hour');
    COMMIT;
    PERFORM delete_job(job_id);
END $$;
SELECT add_job('fleetpulse_backfill_telemetry_rollups', interval '1 day', initial_start => now());
