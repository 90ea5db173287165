-- Telemetry layout for half the database CPU and fewer bytes per reading (issue 17; figures in
-- benchmarks/results.md). Plain PostgreSQL variant; the TimescaleDB one creates the same names.
--
-- Why: a row of the old `telemetry` carried two text ids (in the row and in its unique index)
-- and a jsonb parsed per row. Now a device is an int key (assigned at registration, or on its
-- first stored reading), metric names are interned ids, values a float8 array in the payload's
-- order, and the unique key is (device_key, time): ingest writes it with binary COPY, no text
-- comparison and no jsonb parse. Readers that want the old shape use the `telemetry` view.

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

CREATE TABLE telemetry_readings (
    time           timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    ingest_xid     bigint      DEFAULT (pg_current_xact_id()::text::bigint),
    seq            bigint,
    device_key     int         NOT NULL,
    metric_ids     int[]       NOT NULL,
    metric_values  float8[]    NOT NULL,
    CONSTRAINT telemetry_readings_key PRIMARY KEY (device_key, time)
) PARTITION BY RANGE (time);
CREATE TABLE telemetry_readings_default PARTITION OF telemetry_readings DEFAULT;
-- time, received_at and ingest_xid grow with each partition's physical order: BRIN finds the
-- rollup's new hours and the exporter's ranges for a few index pages and costs ingest ~nothing.
CREATE INDEX telemetry_readings_time_brin ON telemetry_readings USING brin (time);
CREATE INDEX telemetry_readings_received_brin ON telemetry_readings USING brin (received_at);
CREATE INDEX telemetry_readings_ingest_xid ON telemetry_readings USING brin (ingest_xid);

CREATE OR REPLACE FUNCTION fleetpulse_ensure_telemetry_partitions(days_back int, days_ahead int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    day date;
    created int := 0;
BEGIN
    FOR day IN SELECT generate_series(current_date - days_back, current_date + days_ahead, '1 day')::date LOOP
        created := created + fleetpulse_ensure_telemetry_partition(day);
    END LOOP;
    RETURN created;
END $$;

CREATE FUNCTION fleetpulse_ensure_telemetry_partition(day date)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    part text := 'telemetry_readings_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(part) IS NOT NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF telemetry_readings FOR VALUES FROM (%L) TO (%L)',
                   part, day::timestamptz, (day + 1)::timestamptz);
    RETURN 1;
EXCEPTION WHEN check_violation THEN
    -- rows for that day already sit in the default partition: leave them there
    RETURN 0;
END $$;

CREATE OR REPLACE FUNCTION fleetpulse_drop_telemetry_partitions(keep_days int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped int := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry_readings'::regclass
          AND c.relname ~ '^telemetry_readings_[0-9]{8}$'
          AND to_date(substr(c.relname, 20), 'YYYYMMDD') < current_date - keep_days
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

-- ---------------------------------------------------------------- existing rows, then the view
INSERT INTO device_keys (tenant_id, device_id)
SELECT tenant_id, device_id FROM devices
UNION SELECT DISTINCT tenant_id, device_id FROM telemetry
ORDER BY 1, 2;

INSERT INTO metric_names (name, is_bool)
SELECT DISTINCT m.key, jsonb_typeof(m.value) = 'boolean'
FROM telemetry t, jsonb_each(fleetpulse_jsonb_object(t.metrics)) AS m
WHERE jsonb_typeof(m.value) IN ('number', 'boolean')
ORDER BY 1, 2;

-- the old daily partitions' days, so copied rows land in daily partitions, not the default
SELECT count(fleetpulse_ensure_telemetry_partition(to_date(substr(c.relname, 11), 'YYYYMMDD')))
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_[0-9]{8}$';
SELECT fleetpulse_ensure_telemetry_partitions(35, 7);

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
-- Same contract as 0500 (telemetry_hourly, telemetry_metrics_hourly keep their columns), read
-- from the new table: the dirty hours by key, values from the arrays.
CREATE OR REPLACE FUNCTION fleetpulse_refresh_telemetry_rollups(settle interval DEFAULT interval '15 minutes')
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    state telemetry_rollup_state;
    horizon timestamptz := date_trunc('hour', now() - settle);
    groups int;
BEGIN
    SELECT * INTO state FROM telemetry_rollup_state FOR UPDATE;
    DROP TABLE IF EXISTS pg_temp.fleetpulse_dirty_hours;
    CREATE TEMP TABLE fleetpulse_dirty_hours ON COMMIT DROP AS
        SELECT device_key, date_trunc('hour', time) AS bucket
        FROM telemetry_readings WHERE time >= state.complete_before AND time < horizon
        UNION
        SELECT device_key, date_trunc('hour', time) AS bucket
        FROM telemetry_readings WHERE received_at >= state.received_from AND time < horizon;
    GET DIAGNOSTICS groups = ROW_COUNT;

    INSERT INTO telemetry_metrics_hourly AS h
        (tenant_id, device_id, metric, bucket, min, max, sum, count)
    SELECT k.tenant_id, k.device_id, n.name, d.bucket, min(u.v), max(u.v), sum(u.v::numeric), count(*)
    FROM fleetpulse_dirty_hours d
    JOIN device_keys k ON k.device_key = d.device_key
    JOIN telemetry_readings t ON t.device_key = d.device_key
                             AND t.time >= d.bucket AND t.time < d.bucket + interval '1 hour'
    CROSS JOIN LATERAL unnest(t.metric_ids, t.metric_values) AS u(id, v)
    JOIN metric_names n ON n.metric_id = u.id
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (tenant_id, device_id, metric, bucket) DO UPDATE
        SET min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum, count = EXCLUDED.count;

    INSERT INTO telemetry_hourly (bucket, tenant_id, device_id, readings)
    SELECT d.bucket, k.tenant_id, k.device_id, count(*)
    FROM fleetpulse_dirty_hours d
    JOIN device_keys k ON k.device_key = d.device_key
    JOIN telemetry_readings t ON t.device_key = d.device_key
                             AND t.time >= d.bucket AND t.time < d.bucket + interval '1 hour'
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, device_id, bucket) DO UPDATE SET readings = EXCLUDED.readings;

    UPDATE telemetry_rollup_state
       SET complete_before = GREATEST(complete_before, horizon), received_from = now() - settle;
    DROP TABLE fleetpulse_dirty_hours;
    RETURN groups;
END $$;

-- 0002's refresh of the hourly counts alone, from the new table.
CREATE OR REPLACE FUNCTION fleetpulse_refresh_telemetry_hourly(since timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO telemetry_hourly (bucket, tenant_id, device_id, readings)
    SELECT date_trunc('hour', r.time), k.tenant_id, k.device_id, count(*)
    FROM telemetry_readings r JOIN device_keys k ON k.device_key = r.device_key
    WHERE r.time >= date_trunc('hour', since)
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, device_id, bucket) DO UPDATE SET readings = EXCLUDED.readings;
$$;
