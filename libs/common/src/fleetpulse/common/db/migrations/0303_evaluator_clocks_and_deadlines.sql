-- evaluator: two clocks kept apart, and no_data deadlines that scale with what is due.
--
-- Reading order is device time, per metric: ``marks`` holds, for each metric a threshold rule
-- of the device looks at, the device time (epoch microseconds) of the newest value evaluated;
-- ``last_seen`` is now the device time of the newest reading of any metric (heartbeats no longer
-- move it). Liveness is receive time: ``last_heartbeat_at`` (any heartbeat) and
-- ``last_reading_at`` (a reading newer than every earlier one; late or duplicate readings are
-- not traffic). ``prev_marks`` returns the marks from before a batch's upsert (as prev_seen).
ALTER TABLE evaluator_devices
    ADD COLUMN marks             jsonb,
    ADD COLUMN prev_marks        jsonb,
    ADD COLUMN last_heartbeat_at timestamptz,
    ADD COLUMN last_reading_at   timestamptz;

-- Rows written before this migration: their last_seen counted heartbeats too; take it as the
-- last traffic (receive and device time were not told apart then).
UPDATE evaluator_devices SET last_reading_at = last_seen WHERE last_seen IS NOT NULL;

-- The newest of each metric in two marks documents ({"metric": epoch_us}).
CREATE FUNCTION evaluator_merge_marks(old jsonb, new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN old IS NULL THEN new
        WHEN new IS NULL THEN old
        ELSE old || coalesce((
            SELECT jsonb_object_agg(n.key, n.value) FROM jsonb_each(new) AS n
            WHERE (old -> n.key) IS NULL OR (old ->> n.key)::bigint < (n.value #>> '{}')::bigint
        ), '{}'::jsonb)
    END
$$;

-- One row per (tenant, no_data rule, device it selects): when the pair may next open an alert.
-- Kept in step with the catalog (a rule created, changed or deleted, a device registered,
-- retagged or decommissioned) by the evaluator; ``armed_at`` is when the pair began (the later of
-- the rule's and the device's last change when the pair appeared), so a device that never
-- reports still alerts ``timeout_s`` after it. ``due_at`` is a lower bound: the clock reads only
-- rows that are due (index below) and either opens an alert or moves ``due_at`` to the real
-- deadline (the device's last traffic + timeout), so the work per tick follows the deadlines
-- that are due, never the size of the fleet.
CREATE TABLE evaluator_deadlines (
    tenant_id     text        NOT NULL,
    rule_id       text        NOT NULL,
    device_id     text        NOT NULL,
    rule_version  int         NOT NULL,
    armed_at      timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, rule_id, device_id)
);
CREATE INDEX evaluator_deadlines_due ON evaluator_deadlines (due_at);
