-- The users of a tenant, each with its own login (`NAME@TENANT`) and role,
-- besides the tenant's own login (its slug and password), its first admin.
CREATE TABLE users (
    tenant_id     TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    -- argon2id, as the tenant's password.
    password_hash TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- Who a web session logged in as: '' is the tenant's own login.
ALTER TABLE web_sessions ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
ALTER TABLE web_sessions ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';

-- Whose SSH key it is: '' is the tenant's own login.
ALTER TABLE tenant_keys ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
