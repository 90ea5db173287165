-- evaluator: rule state in the database, so pending timers and open alerts survive restarts and
-- are shared by replicas. Every change to a device's rule states happens with its
-- evaluator_devices row locked (FOR UPDATE), in the transaction that appends the alert events
-- it decides.
CREATE TABLE evaluator_devices (
    tenant_id   text        NOT NULL,
    device_id   text        NOT NULL,
    -- newest record (reading or heartbeat) applied; older or equal ones are skipped
    last_seen   timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX evaluator_devices_last_seen ON evaluator_devices (tenant_id, last_seen);

-- Only keys with something going on have a row: a pending threshold or an open alert.
CREATE TABLE evaluator_rule_state (
    tenant_id     text        NOT NULL,
    device_id     text        NOT NULL,
    rule_id       text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('pending', 'firing')),
    since         timestamptz NOT NULL,
    due_at        timestamptz,
    rule_version  int         NOT NULL,
    alert_id      text,
    value         jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, rule_id)
);
CREATE INDEX evaluator_rule_state_due ON evaluator_rule_state (due_at) WHERE status = 'pending';
