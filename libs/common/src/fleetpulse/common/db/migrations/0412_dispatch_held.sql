-- dispatcher: firing notifications held by a matcher silence or an inhibit rule (as
-- Alertmanager holds them): the alert's AlertOpened data (``member``), re-checked at
-- ``check_at``; once nothing holds it and it still fires, its firing notification goes out.
CREATE TABLE dispatch_held (
    tenant_id  text        NOT NULL,
    alert_id   text        NOT NULL,
    member     jsonb       NOT NULL,
    held_at    timestamptz NOT NULL,
    check_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE INDEX dispatch_held_due ON dispatch_held (check_at);
