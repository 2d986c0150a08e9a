-- Webhook endpoints of a tenant and the attempts to deliver events to them.
-- The deliveries still to make are rows of `jobs` (kind `webhook`), whose
-- lease holds the time of the next attempt while no node works on them.
-- The secret is kept as given: every delivery is signed with it.
CREATE TABLE webhook_endpoints (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_ms);

-- One row per attempt (its HTTP status, or the error that stopped it).
CREATE TABLE webhook_deliveries (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    endpoint_id  TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    event        TEXT NOT NULL,
    attempt      BIGINT NOT NULL,
    attempted_ms BIGINT NOT NULL,
    status_code  BIGINT,
    latency_ms   BIGINT NOT NULL,
    error        TEXT
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (tenant_id, endpoint_id, attempted_ms);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (attempted_ms);

-- A tenant's pending deliveries are counted against its bound.
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, kind);
