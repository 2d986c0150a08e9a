-- A tenant's SIPREC settings (key mapping) as JSON, and the source addresses
-- of its recording clients (SBCs), which select the tenant of a SIPREC call
-- whose Request-URI names none.
CREATE TABLE siprec_settings (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    settings   TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE siprec_sources (
    address   TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id)
);
