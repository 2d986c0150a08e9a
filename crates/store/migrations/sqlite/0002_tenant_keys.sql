-- SSH public keys a tenant may log in with over SFTP (besides its password).
CREATE TABLE tenant_keys (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    -- "ALGORITHM BASE64", without the comment: what a client presents.
    public_key TEXT NOT NULL,
    comment    TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, public_key)
);
