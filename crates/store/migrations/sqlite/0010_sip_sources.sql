-- The SBCs that may send SIPREC calls for a tenant are registered by the
-- operator (`callmeta tenant sip-source add SLUG CIDR`), never claimed by a
-- tenant: the addresses a tenant once set through its own SIPREC settings
-- are not carried over, since any tenant could claim any address that way.
-- A network may be registered for several tenants (a shared SBC), which the
-- Request-URI user then selects among.
CREATE TABLE sip_sources (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    network    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, network)
);

DROP TABLE siprec_sources;
