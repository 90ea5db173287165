-- provision_api: tombstones of deleted catalog rows (rules, routes), so a late or replayed
-- Created/Updated event older than the deletion never brings the row back, while the readers
-- of rules and routes (evaluator, dispatcher) keep seeing only live rows.
CREATE TABLE catalog_tombstones (
    tenant_id   text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('rule', 'route')),
    entity_id   text        NOT NULL,
    version     int         NOT NULL,
    deleted_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, entity_id)
);

-- Cursor pagination of GET /api/v1/quarantine (a tenant's rows, newest first).
CREATE INDEX IF NOT EXISTS quarantine_tenant_id ON quarantine (tenant_id, id DESC);
