-- Web app sessions: the SHA-256 of the cookie's token (never the token),
-- the tenant it logged in, the CSRF token its forms carry, and when it ends.
CREATE TABLE web_sessions (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    tenant_slug TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL
);

CREATE INDEX web_sessions_expiry ON web_sessions (expires_ms);
