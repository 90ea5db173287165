-- Contract tables quarantine and device_state.
CREATE TABLE quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    tenant_id    text,
    device_id    text,
    topic        text        NOT NULL,
    reason       text        NOT NULL CHECK (reason IN (
        'BAD_TOPIC', 'PAYLOAD_TOO_LARGE', 'BAD_JSON', 'SCHEMA_INVALID', 'UNKNOWN_DEVICE',
        'DEVICE_DECOMMISSIONED', 'RATE_LIMITED', 'TIMESTAMP_OUT_OF_RANGE')),
    detail       text        NOT NULL,
    payload      bytea       NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX quarantine_tenant_time ON quarantine (tenant_id, received_at DESC);
CREATE INDEX quarantine_time ON quarantine (received_at DESC);

CREATE TABLE device_state (
    tenant_id       text        NOT NULL,
    device_id       text        NOT NULL,
    last_seen       timestamptz NOT NULL,
    last_reading_at timestamptz,
    last_heartbeat  timestamptz,
    metrics         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id)
);
