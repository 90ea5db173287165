-- evaluator: the memory of window and rate conditions (issue 19), so windows survive restarts
-- and are shared by replicas like the pending timers. One row per (device, rule) with a general
-- rule that has seen a value; written with the device's evaluator_devices row locked, in the
-- transaction that appends the alert events it decides. samples: per condition, the remembered
-- values oldest first, {"c": [[[epoch_s, value], ...] per condition]}; a row of an older rule_version starts over.
CREATE TABLE evaluator_condition_memory (
    tenant_id     text        NOT NULL,
    device_id     text        NOT NULL,
    rule_id       text        NOT NULL,
    rule_version  int         NOT NULL,
    samples       jsonb       NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, rule_id)
);
