-- Uploads being ingested. A row is written once an upload's original is in
-- blob storage and deleted in the transaction that records its version, so a
-- row whose lease has run out was left by a node that died mid-ingestion;
-- another node claims it (one node only) and finishes the work.
CREATE TABLE ingest_jobs (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    table_name  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    channel     TEXT NOT NULL,
    filename    TEXT,
    blob_key    TEXT NOT NULL,
    options     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX ingest_jobs_lease ON ingest_jobs (lease_until);
