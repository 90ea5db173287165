-- Projections of the configuration streams (tenant-, device-, profile-, rule-, integration-,
-- route-), of alerts and of deliveries. Every row keeps the version of the last event of its
-- stream that it reflects: handlers apply an event only when it is newer, so replaying the log
-- or applying an event twice gives the same rows.
CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    version     int         NOT NULL
);

CREATE TABLE devices (
    tenant_id           text        NOT NULL,
    device_id           text        NOT NULL,
    name                text,
    tags                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status              text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'decommissioned')),
    credentials_version int         NOT NULL DEFAULT 0,
    registered_at       timestamptz NOT NULL,
    decommissioned_at   timestamptz,
    updated_at          timestamptz NOT NULL,
    version             int         NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
CREATE INDEX devices_tags ON devices USING gin (tags jsonb_path_ops);
CREATE INDEX devices_updated ON devices (updated_at);

CREATE TABLE provisioning_profiles (
    tenant_id        text        NOT NULL,
    profile_id       text        NOT NULL,
    name             text        NOT NULL,
    provision_key    text        NOT NULL UNIQUE,
    secret_hash      text        NOT NULL,
    device_limit     int,
    devices_claimed  int         NOT NULL DEFAULT 0,
    expires_at       timestamptz,
    tags             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at       timestamptz NOT NULL,
    version          int         NOT NULL,
    PRIMARY KEY (tenant_id, profile_id)
);

CREATE TABLE rules (
    tenant_id        text        NOT NULL,
    rule_id          text        NOT NULL,
    name             text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('threshold', 'no_data')),
    severity         text        NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning', 'info')),
    definition       jsonb       NOT NULL,
    device_selector  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    enabled          boolean     NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          int         NOT NULL,
    PRIMARY KEY (tenant_id, rule_id)
);
CREATE INDEX rules_updated ON rules (updated_at);

CREATE TABLE integrations (
    tenant_id        text        NOT NULL,
    integration_id   text        NOT NULL,
    name             text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('webhook', 'email', 'mqtt', 'sns')),
    config           jsonb       NOT NULL,
    secret_sealed    text,
    status           text        NOT NULL DEFAULT 'enabled' CHECK (status IN ('enabled', 'disabled')),
    disabled_reason  text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          int         NOT NULL,
    PRIMARY KEY (tenant_id, integration_id)
);

CREATE TABLE routes (
    tenant_id          text        NOT NULL,
    route_id           text        NOT NULL,
    name               text        NOT NULL,
    integration_id     text        NOT NULL,
    match              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    group_by           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    group_wait_s       int         NOT NULL DEFAULT 0,
    repeat_interval_s  int,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    version            int         NOT NULL,
    PRIMARY KEY (tenant_id, route_id)
);

CREATE TABLE alerts (
    tenant_id        text        NOT NULL,
    alert_id         text        NOT NULL,
    fingerprint      text        NOT NULL,
    rule_id          text        NOT NULL,
    device_id        text        NOT NULL,
    severity         text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved', 'closed')),
    opened_at        timestamptz NOT NULL,
    acknowledged_at  timestamptz,
    silenced_until   timestamptz,
    resolved_at      timestamptz,
    closed_at        timestamptz,
    details          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version          int         NOT NULL,
    PRIMARY KEY (tenant_id, alert_id)
);
-- One open alert per (tenant, rule, device): the database enforces it.
CREATE UNIQUE INDEX alerts_one_open_per_fingerprint ON alerts (fingerprint)
    WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_tenant_status ON alerts (tenant_id, status, opened_at DESC);

CREATE TABLE deliveries (
    tenant_id          text        NOT NULL,
    delivery_id        text        NOT NULL,
    alert_id           text        NOT NULL,
    alert_event_id     uuid        NOT NULL,
    integration_id     text        NOT NULL,
    status             text        NOT NULL CHECK (status IN ('scheduled', 'succeeded', 'abandoned')),
    attempts           int         NOT NULL DEFAULT 0,
    last_status_code   int,
    last_error         text,
    scheduled_at       timestamptz NOT NULL,
    completed_at       timestamptz,
    version            int         NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id),
    CONSTRAINT deliveries_once_per_event UNIQUE (alert_event_id, integration_id)
);
CREATE INDEX deliveries_alert ON deliveries (tenant_id, alert_id);

CREATE TABLE delivery_attempts (
    tenant_id     text        NOT NULL,
    delivery_id   text        NOT NULL,
    attempt       int         NOT NULL,
    attempted_at  timestamptz NOT NULL,
    status_code   int,
    latency_ms    double precision,
    error         text,
    PRIMARY KEY (tenant_id, delivery_id, attempt)
);
