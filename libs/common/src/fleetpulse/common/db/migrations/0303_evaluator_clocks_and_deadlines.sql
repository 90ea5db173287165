-- evaluator: two clocks kept apart, and no_data deadlines that scale with what is due.
--
-- Reading order is device time, per metric: for each metric a threshold rule of the device
-- looks at, the device time of the newest value evaluated. ``last_seen`` is now the device time
-- of the newest reading of any metric (heartbeats no longer move it). ``marks`` NULL means every
-- such metric is at ``last_seen`` (the common case: each reading carries them all, so in-order
-- batches write nothing more than before); otherwise ``marks`` is {"metric": epoch_us} (a JSON
-- null: not seen yet). ``prev_marks`` returns the marks from before a batch's upsert, only when
-- the batch holds a reading that is not newer than ``last_seen`` (the only case that reads them).
-- Liveness is receive time: ``last_heartbeat_at`` (any heartbeat) and ``last_reading_at`` (a
-- reading newer than every earlier one; late or duplicate readings are not traffic).
ALTER TABLE evaluator_devices
    ADD COLUMN marks             jsonb,
    ADD COLUMN prev_marks        jsonb,
    ADD COLUMN last_heartbeat_at timestamptz,
    ADD COLUMN last_reading_at   timestamptz;

-- Rows written before this migration: their last_seen counted heartbeats too; take it as the
-- last traffic (receive and device time were not told apart then).
UPDATE evaluator_devices SET last_reading_at = last_seen WHERE last_seen IS NOT NULL;

-- Merge a batch's marks ({"metric": epoch_us or null}, one key per tracked metric) into a
-- device's: per metric the newer one; ``old`` NULL stands for "every metric at old_seen".
CREATE FUNCTION evaluator_merge_marks(old jsonb, old_seen timestamptz, new jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(old, '{}'::jsonb) || coalesce((
        SELECT jsonb_object_agg(n.key, to_jsonb(greatest(
            CASE WHEN old IS NULL
                 THEN (extract(epoch FROM old_seen) * 1000000)::bigint
                 ELSE (old ->> n.key)::bigint END,
            (n.value #>> '{}')::bigint)))
        FROM jsonb_each(new) AS n
    ), '{}'::jsonb)
$$;

-- A batch whose readings all carry every tracked metric at the same newest time ``at`` (sent as
-- NULL marks) but is not newer than the device: raise each explicit mark to at least ``at``.
CREATE FUNCTION evaluator_raise_marks(old jsonb, at timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT jsonb_object_agg(o.key, to_jsonb(greatest(
        (o.value #>> '{}')::bigint, (extract(epoch FROM at) * 1000000)::bigint)))
    FROM jsonb_each(old) AS o
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
