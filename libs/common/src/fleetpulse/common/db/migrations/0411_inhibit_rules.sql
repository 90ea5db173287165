-- Inhibit rules (Alertmanager's inhibit_rules), projected from InhibitRuleCreated /
-- InhibitRuleDeleted on the inhibit-{tenant}-{id} streams: an open alert matching
-- source_matchers mutes the notifications of alerts matching target_matchers that have the same
-- values for the ``equal`` labels. A deleted rule keeps its row (deleted_at) so replaying an
-- older event cannot revive it.
CREATE TABLE inhibit_rules (
    tenant_id        text        NOT NULL,
    inhibit_rule_id  text        NOT NULL,
    name             text        NOT NULL,
    source_matchers  jsonb       NOT NULL,
    target_matchers  jsonb       NOT NULL,
    equal            jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_by       text        NOT NULL,
    created_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    version          int         NOT NULL,
    PRIMARY KEY (tenant_id, inhibit_rule_id)
);
