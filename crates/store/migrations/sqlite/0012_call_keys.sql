-- Filters that stay fast at millions of calls.
--
-- A call gets a sequence number, `seq`: its row id, now the table's integer
-- primary key (so that nothing, not even VACUUM, renumbers it). Calls are
-- listed newest first by (timestamp_ms, seq).
CREATE TABLE calls_seq (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
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
INSERT INTO calls_seq (seq, id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment,
                       merged, audio_key, created_ms, updated_ms)
    SELECT rowid, id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment,
           merged, audio_key, created_ms, updated_ms
    FROM calls ORDER BY rowid;
DROP TABLE calls;
ALTER TABLE calls_seq RENAME TO calls;
-- Every index of a rowid table ends with the row id: this one is ordered by
-- (tenant_id, timestamp_ms, seq).
CREATE INDEX calls_by_time ON calls (tenant_id, timestamp_ms);
CREATE UNIQUE INDEX calls_by_external_id ON calls (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- A tenant's number, short to repeat in every index entry.
ALTER TABLE tenants ADD COLUMN num INTEGER;
UPDATE tenants SET num = rowid;
CREATE UNIQUE INDEX tenants_by_num ON tenants (num);
CREATE TRIGGER tenants_num AFTER INSERT ON tenants WHEN NEW.num IS NULL BEGIN
    UPDATE tenants SET num = (SELECT COALESCE(MAX(num), 0) + 1 FROM tenants) WHERE id = NEW.id;
END;

-- The index of calls by key: one entry per metadata key (`m:KEY`, own and
-- added keys, a value's first 200 characters) and per enrichment result
-- (`e:TABLE`, its status), in list order within each (key, value). Written by
-- the triggers below in the transaction that writes the call.
CREATE TABLE call_keys (
    tenant INTEGER NOT NULL,
    k      TEXT NOT NULL,
    v      TEXT NOT NULL,
    ts     INTEGER NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (tenant, k, v, ts, seq)
) WITHOUT ROWID;

INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
    SELECT t.num, 'm:' || j.key, substr(j.value, 1, 200), c.timestamp_ms, c.seq
    FROM calls c JOIN tenants t ON t.id = c.tenant_id, json_each(c.merged) j
    WHERE j.type = 'text';
INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
    SELECT t.num, 'e:' || (e.value ->> 'table'), e.value ->> 'status', c.timestamp_ms, c.seq
    FROM calls c JOIN tenants t ON t.id = c.tenant_id, json_each(c.enrichment) e;

CREATE TRIGGER call_keys_insert AFTER INSERT ON calls BEGIN
    INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
        SELECT t.num, 'm:' || j.key, substr(j.value, 1, 200), NEW.timestamp_ms, NEW.seq
        FROM tenants t, json_each(NEW.merged) j
        WHERE t.id = NEW.tenant_id AND j.type = 'text';
    INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
        SELECT t.num, 'e:' || (e.value ->> 'table'), e.value ->> 'status', NEW.timestamp_ms, NEW.seq
        FROM tenants t, json_each(NEW.enrichment) e
        WHERE t.id = NEW.tenant_id;
END;

CREATE TRIGGER call_keys_delete AFTER DELETE ON calls BEGIN
    DELETE FROM call_keys
    WHERE tenant = (SELECT num FROM tenants WHERE id = OLD.tenant_id)
      AND (k, v) IN (SELECT 'm:' || j.key, substr(j.value, 1, 200) FROM json_each(OLD.merged) j
                     UNION ALL
                     SELECT 'e:' || (e.value ->> 'table'), e.value ->> 'status' FROM json_each(OLD.enrichment) e)
      AND ts = OLD.timestamp_ms AND seq = OLD.seq;
END;

CREATE TRIGGER call_keys_update AFTER UPDATE OF merged, enrichment, timestamp_ms ON calls BEGIN
    DELETE FROM call_keys
    WHERE tenant = (SELECT num FROM tenants WHERE id = OLD.tenant_id)
      AND (k, v) IN (SELECT 'm:' || j.key, substr(j.value, 1, 200) FROM json_each(OLD.merged) j
                     UNION ALL
                     SELECT 'e:' || (e.value ->> 'table'), e.value ->> 'status' FROM json_each(OLD.enrichment) e)
      AND ts = OLD.timestamp_ms AND seq = OLD.seq;
    INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
        SELECT t.num, 'm:' || j.key, substr(j.value, 1, 200), NEW.timestamp_ms, NEW.seq
        FROM tenants t, json_each(NEW.merged) j
        WHERE t.id = NEW.tenant_id AND j.type = 'text';
    INSERT OR IGNORE INTO call_keys (tenant, k, v, ts, seq)
        SELECT t.num, 'e:' || (e.value ->> 'table'), e.value ->> 'status', NEW.timestamp_ms, NEW.seq
        FROM tenants t, json_each(NEW.enrichment) e
        WHERE t.id = NEW.tenant_id;
END;
