-- telemetry on plain PostgreSQL: native range partitions by day, a default partition so no row
-- is ever refused, and a plain hourly rollup refreshed by fleetpulse_refresh_telemetry_hourly().
CREATE TABLE telemetry (
    time         timestamptz NOT NULL,
    tenant_id    text        NOT NULL,
    device_id    text        NOT NULL,
    seq          bigint,
    metrics      jsonb       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT telemetry_key UNIQUE (tenant_id, device_id, time)
) PARTITION BY RANGE (time);
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;

CREATE FUNCTION fleetpulse_ensure_telemetry_partitions(days_back int, days_ahead int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    day date;
    created int := 0;
    part text;
BEGIN
    FOR day IN SELECT generate_series(current_date - days_back, current_date + days_ahead, '1 day')::date LOOP
        part := 'telemetry_' || to_char(day, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I PARTITION OF telemetry FOR VALUES FROM (%L) TO (%L)',
                               part, day::timestamptz, (day + 1)::timestamptz);
                created := created + 1;
            EXCEPTION WHEN check_violation THEN
                -- rows for that day already sit in the default partition: leave them there
                NULL;
            END;
        END IF;
    END LOOP;
    RETURN created;
END $$;

CREATE FUNCTION fleetpulse_drop_telemetry_partitions(keep_days int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    part record;
    dropped int := 0;
BEGIN
    FOR part IN
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'telemetry'::regclass AND c.relname ~ '^telemetry_[0-9]{8}$'
          AND to_date(substr(c.relname, 11), 'YYYYMMDD') < current_date - keep_days
    LOOP
        EXECUTE format('DROP TABLE %I', part.relname);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END $$;

SELECT fleetpulse_ensure_telemetry_partitions(35, 7);

CREATE TABLE telemetry_hourly (
    bucket     timestamptz NOT NULL,
    tenant_id  text        NOT NULL,
    device_id  text        NOT NULL,
    readings   bigint      NOT NULL,
    PRIMARY KEY (tenant_id, device_id, bucket)
);

CREATE FUNCTION fleetpulse_refresh_telemetry_hourly(since timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO telemetry_hourly (bucket, tenant_id, device_id, readings)
    SELECT date_trunc('hour', time), tenant_id, device_id, count(*)
    FROM telemetry WHERE time >= date_trunc('hour', since)
    GROUP BY 1, 2, 3
    ON CONFLICT (tenant_id, device_id, bucket) DO UPDATE SET readings = EXCLUDED.readings;
$$;
