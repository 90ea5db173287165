-- The event log (contract: table events) and projection checkpoints.
CREATE TABLE events (
    position     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    stream_id    text        NOT NULL,
    version      int         NOT NULL CHECK (version > 0),
    type         text        NOT NULL,
    tenant_id    text        NOT NULL,
    data         jsonb       NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version UNIQUE (stream_id, version)
);
CREATE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_type_position ON events (type, position);

-- One NOTIFY per appending transaction wakes tailing readers (relay, projectors).
CREATE FUNCTION fleetpulse_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fleetpulse_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION fleetpulse_notify_events();

-- Checkpoints of projections and other readers of the log (outbox relay, subscriptions),
-- written in the same transaction as the rows they describe.
CREATE TABLE checkpoints (
    name        text PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Append with an expected version in one round trip. A transaction-scoped advisory lock
-- serialises appends, so positions become visible in commit order and a reader following
-- position never skips an event that commits late. expected = -1 skips the version check.
CREATE FUNCTION fleetpulse_append(
    p_stream text, p_expected int, p_tenant text,
    p_ids uuid[], p_types text[], p_data jsonb[], p_metadata jsonb[]
) RETURNS TABLE (out_position bigint, out_version int, out_recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    current_version int;
BEGIN
    PERFORM pg_advisory_xact_lock(4702111234474983745);
    SELECT coalesce(max(e.version), 0) INTO current_version FROM events e WHERE e.stream_id = p_stream;
    IF p_expected >= 0 AND current_version <> p_expected THEN
        RAISE EXCEPTION USING ERRCODE = 'FP409', MESSAGE = p_stream,
            DETAIL = p_expected::text || ':' || current_version::text;
    END IF;
    RETURN QUERY
    INSERT INTO events (event_id, stream_id, version, type, tenant_id, data, metadata)
    SELECT i, p_stream, current_version + n::int, t, p_tenant, d, m
    FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY AS x(i, t, d, m, n)
    ORDER BY n
    RETURNING position, version, recorded_at;
END $$;

-- Messages a consumer has handled, recorded in the same transaction as the handling's writes,
-- so redelivered messages (SQS, SNS, MQTT are at least once) change nothing the second time.
CREATE TABLE inbox (
    consumer      text        NOT NULL,
    message_id    text        NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);
