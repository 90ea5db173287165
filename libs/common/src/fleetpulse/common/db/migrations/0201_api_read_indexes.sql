-- provision_api: keyset pagination of GET /api/v1/alerts without a status filter (newest first,
-- ties broken by alert_id) reads the index instead of sorting every alert of the tenant.
CREATE INDEX alerts_tenant_opened ON alerts (tenant_id, opened_at DESC, alert_id DESC);
