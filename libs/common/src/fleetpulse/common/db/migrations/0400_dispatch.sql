-- dispatcher/delivery_worker: what the deliveries projection adds, and the dispatcher's own state.

-- Projected from DeliveryScheduled / DeliveryAttempted.
ALTER TABLE deliveries
    ADD COLUMN route_id          text,
    ADD COLUMN notification_type text,
    ADD COLUMN next_attempt_at   timestamptz,
    -- Not projected: the delivery worker's claim on an attempt in flight, so two copies of the
    -- same SQS message never attempt the same delivery at once. A rebuild clears it (harmless).
    ADD COLUMN lease_until       timestamptz;

-- Which integrations got a firing notification for an alert, and whether its resolved
-- notification was scheduled: "if a firing notification went out, its resolved one follows".
-- Written in the transaction that appends the DeliveryScheduled.
CREATE TABLE dispatch_notifications (
    tenant_id             text        NOT NULL,
    alert_id              text        NOT NULL,
    integration_id        text        NOT NULL,
    route_id              text        NOT NULL,
    firing_delivery_id    text        NOT NULL,
    notified_at           timestamptz NOT NULL,
    resolved_delivery_id  text,
    PRIMARY KEY (tenant_id, alert_id, integration_id)
);

-- Alert groups of routes with group_by / group_wait_s / repeat_interval_s: the firing alerts
-- waiting for the group's next notification (flush_at), and when the group last notified.
CREATE TABLE dispatch_groups (
    tenant_id         text        NOT NULL,
    route_id          text        NOT NULL,
    group_key         text        NOT NULL,
    integration_id    text        NOT NULL,
    labels            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    pending           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    flush_at          timestamptz,
    last_notified_at  timestamptz,
    PRIMARY KEY (tenant_id, route_id, group_key)
);
CREATE INDEX dispatch_groups_due ON dispatch_groups (flush_at) WHERE flush_at IS NOT NULL;
