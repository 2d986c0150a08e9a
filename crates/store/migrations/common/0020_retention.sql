-- Erasure and retention.
--
-- A tenant's retention policy: each column a number of days (or of versions
-- kept per table); NULL keeps forever. Applied by a leased job per tenant
-- (kind `retention`), whose lease holds the time of its next run.
CREATE TABLE retention_policies (
    tenant_id             TEXT PRIMARY KEY REFERENCES tenants(id),
    audio_days            BIGINT,
    calls_days            BIGINT,
    rejected_uploads_days BIGINT,
    versions_kept         BIGINT,
    updated_ms            BIGINT NOT NULL
);

-- When retention removed a call's audio (its `audio_key` is then NULL): the
-- call keeps its metadata and says why its audio is gone.
ALTER TABLE calls ADD COLUMN audio_pruned_ms BIGINT;

-- The calls whose audio is still stored, by time: a run of the policy reads
-- only those past the cut-off, not every old call it pruned before.
CREATE INDEX calls_with_audio ON calls (tenant_id, timestamp_ms) WHERE audio_key IS NOT NULL;
