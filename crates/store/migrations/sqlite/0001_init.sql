-- Times are epoch milliseconds, ids are text, JSON is text: the same shapes as
-- the PostgreSQL schema, so both backends read back identical records.
CREATE TABLE tenants (
    id            TEXT PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_ms    INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    token_hash TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    created_ms INTEGER NOT NULL
);

CREATE TABLE ref_tables (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    name           TEXT NOT NULL,
    options        TEXT NOT NULL,
    active_version TEXT,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE versions (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    table_name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    channel    TEXT NOT NULL,
    filename   TEXT,
    sha256     TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    blob_key   TEXT NOT NULL,
    accepted   INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    options    TEXT NOT NULL,
    report     TEXT NOT NULL
);
CREATE INDEX versions_by_table ON versions (tenant_id, table_name, created_ms);

CREATE TABLE calls (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    timestamp_ms INTEGER NOT NULL,
    source       TEXT NOT NULL,
    external_id  TEXT,
    metadata     TEXT NOT NULL,
    enrichment   TEXT NOT NULL,
    merged       TEXT NOT NULL,
    audio_key    TEXT,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL
);
CREATE INDEX calls_by_time ON calls (tenant_id, timestamp_ms DESC, id DESC);
CREATE UNIQUE INDEX calls_by_external_id ON calls (tenant_id, external_id) WHERE external_id IS NOT NULL;
