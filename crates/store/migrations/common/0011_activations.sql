-- The activation history of each table: every time a version became the
-- active one (an upload, a settings change, a rollback), by which channel.
CREATE TABLE activations (
    tenant_id    TEXT NOT NULL,
    table_name   TEXT NOT NULL,
    version_id   TEXT NOT NULL,
    activated_ms BIGINT NOT NULL,
    channel      TEXT NOT NULL
);
CREATE INDEX activations_by_table ON activations (tenant_id, table_name, activated_ms);
