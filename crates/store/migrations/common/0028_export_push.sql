-- The daily export push.
--
-- A tenant's destination (SFTP or S3), format and schedule, as one JSON
-- document (its secrets included: the push needs them; the API never shows
-- them). Its schedule is a leased job per tenant (kind `export_schedule`),
-- whose lease holds the time of its next run; each day's push is a job of
-- its own (kind `export_push`, id `export-<tenant>-<day>`).
CREATE TABLE export_push_settings (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    settings   TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- One row per tenant and day pushed (or being pushed): what the last
-- attempt gave. A day pushed again overwrites its row, as it overwrites
-- its file.
CREATE TABLE export_runs (
    tenant_id       TEXT NOT NULL REFERENCES tenants(id),
    day             TEXT NOT NULL,
    file_name       TEXT NOT NULL,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    calls           BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    error           TEXT,
    requested_ms    BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    next_attempt_ms BIGINT,
    PRIMARY KEY (tenant_id, day)
);
