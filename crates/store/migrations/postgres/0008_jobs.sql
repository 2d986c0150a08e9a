-- Background work of every kind in one table: an upload being ingested, a
-- recording in progress, a back-fill. A row is leased to the node doing the
-- work, which renews the lease while it works; a row whose lease ran out was
-- left by a node that stopped, and another node claims it (one node only,
-- FOR UPDATE SKIP LOCKED) and finishes the work. `payload` is the JSON the
-- kind's use case needs.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    created_ms  BIGINT NOT NULL,
    payload     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX jobs_stale ON jobs (kind, lease_until);
CREATE INDEX jobs_owner ON jobs (owner);

-- Uploads being ingested when this version was installed go on as jobs.
INSERT INTO jobs (id, kind, tenant_id, created_ms, payload, owner, lease_until, attempts)
SELECT id, 'ingest', tenant_id, created_ms,
       json_build_object('table', table_name, 'channel', channel, 'filename', filename,
                         'blob_key', blob_key, 'options', options::json)::text,
       owner, lease_until, attempts
FROM ingest_jobs;

DROP TABLE ingest_jobs;
