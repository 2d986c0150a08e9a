-- Back-fills: what each was asked and its report, so far while it runs (its
-- job holds the progress) and final once finished. Kept for reading back.
CREATE TABLE backfills (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    finished_ms BIGINT,
    dry_run     BIGINT NOT NULL,
    filter      TEXT NOT NULL,
    report      TEXT NOT NULL
);

CREATE INDEX backfills_tenant ON backfills (tenant_id, created_ms);
