-- Silences with matchers (Alertmanager-style), projected from SilenceCreated / SilenceExpired on
-- the silence-{tenant}-{id} streams. provision_api applies the projection inline; the
-- dispatcher reads the active ones (starts_at <= now < ends_at) before every notification.
CREATE TABLE silences (
    tenant_id   text        NOT NULL,
    silence_id  text        NOT NULL,
    -- [{"name": "tags.site", "type": "=~", "value": "north|south"}, ...]
    matchers    jsonb       NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_by  text        NOT NULL,
    comment     text        NOT NULL,
    created_at  timestamptz NOT NULL,
    expired_by  text,
    version     int         NOT NULL,
    PRIMARY KEY (tenant_id, silence_id)
);
CREATE INDEX silences_by_end ON silences (tenant_id, ends_at);
