-- API tokens become named, with a role, an optional expiry and the time of
-- their last use (written at most once a minute). A tenant's first token,
-- minted with the tenant, becomes its admin token: its id is the tenant's id,
-- so that it is listed and can be revoked like any other.
ALTER TABLE api_tokens ADD COLUMN id TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN name TEXT NOT NULL DEFAULT 'initial';
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_tokens ADD COLUMN expires_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_ms BIGINT;
UPDATE api_tokens SET id = tenant_id WHERE id = '';
CREATE UNIQUE INDEX api_tokens_by_id ON api_tokens (id);
CREATE INDEX api_tokens_by_tenant ON api_tokens (tenant_id, created_ms);
