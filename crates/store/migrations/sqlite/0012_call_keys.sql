-- Filters that stay fast at millions of calls.
--
-- A call's `seq` is its place in list order: its time in milliseconds times
-- 2^20, plus its rank among the calls of that millisecond. It is the table's
-- integer primary key (so that nothing, not even VACUUM, renumbers it), and
-- the calls' row order is list order.
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
    SELECT timestamp_ms * 1048576 + ROW_NUMBER() OVER (PARTITION BY timestamp_ms ORDER BY rowid) - 1,
           id, tenant_id, timestamp_ms, source, external_id, metadata, enrichment,
           merged, audio_key, created_ms, updated_ms
    FROM calls;
DROP TABLE calls;
ALTER TABLE calls_seq RENAME TO calls;
-- Every index of a rowid table ends with the row id: this one is ordered by
-- (tenant_id, timestamp_ms, seq).
CREATE INDEX calls_by_time ON calls (tenant_id, timestamp_ms);
CREATE UNIQUE INDEX calls_by_external_id ON calls (tenant_id, external_id) WHERE external_id IS NOT NULL;

-- A tenant's number, short to repeat in every term.
ALTER TABLE tenants ADD COLUMN num INTEGER;
UPDATE tenants SET num = rowid;
CREATE UNIQUE INDEX tenants_by_num ON tenants (num);
CREATE TRIGGER tenants_num AFTER INSERT ON tenants WHEN NEW.num IS NULL BEGIN
    UPDATE tenants SET num = (SELECT COALESCE(MAX(num), 0) + 1 FROM tenants) WHERE id = NEW.id;
END;

-- The index of calls by key: a full-text index whose document is a call
-- (row id = seq) and whose terms are its keys and results, spelled in
-- letters and hexadecimal so that any key and value is one term:
--   t<tenant number>k<hex of the key>v<hex of the value's first 200 characters>
--   t<tenant number>e<hex of the table>s<hex of the status>
-- A term's calls are kept in row id order, which is list order. Written by
-- the triggers below in the transaction that writes the call; FTS5 keeps new
-- terms in memory and writes them out in sorted segments, so a call costs a
-- few microseconds, not one B-tree insert per key.
CREATE VIRTUAL TABLE call_terms USING fts5(
    terms, content = '', contentless_delete = 1, tokenize = 'ascii', detail = 'none'
);
-- The terms themselves, in order: the names of keys and tables.
CREATE VIRTUAL TABLE call_terms_vocab USING fts5vocab(call_terms, 'row');

INSERT INTO call_terms (rowid, terms)
    SELECT c.seq,
           (SELECT group_concat(term, ' ') FROM (
                SELECT 't' || t.num || 'k' || hex(j.key) || 'v' || hex(substr(j.value, 1, 200)) AS term
                FROM json_each(c.merged) j WHERE j.type = 'text'
                UNION ALL
                SELECT 't' || t.num || 'e' || hex(e.value ->> 'table') || 's' || hex(e.value ->> 'status')
                FROM json_each(c.enrichment) e))
    FROM calls c JOIN tenants t ON t.id = c.tenant_id;

CREATE TRIGGER call_terms_insert AFTER INSERT ON calls BEGIN
    INSERT INTO call_terms (rowid, terms)
        SELECT NEW.seq,
               (SELECT group_concat(term, ' ') FROM (
                    SELECT 't' || t.num || 'k' || hex(j.key) || 'v' || hex(substr(j.value, 1, 200)) AS term
                    FROM json_each(NEW.merged) j WHERE j.type = 'text'
                    UNION ALL
                    SELECT 't' || t.num || 'e' || hex(e.value ->> 'table') || 's' || hex(e.value ->> 'status')
                    FROM json_each(NEW.enrichment) e))
        FROM tenants t WHERE t.id = NEW.tenant_id;
END;

CREATE TRIGGER call_terms_delete AFTER DELETE ON calls BEGIN
    DELETE FROM call_terms WHERE rowid = OLD.seq;
END;

CREATE TRIGGER call_terms_update AFTER UPDATE OF merged, enrichment ON calls BEGIN
    DELETE FROM call_terms WHERE rowid = OLD.seq;
    INSERT INTO call_terms (rowid, terms)
        SELECT NEW.seq,
               (SELECT group_concat(term, ' ') FROM (
                    SELECT 't' || t.num || 'k' || hex(j.key) || 'v' || hex(substr(j.value, 1, 200)) AS term
                    FROM json_each(NEW.merged) j WHERE j.type = 'text'
                    UNION ALL
                    SELECT 't' || t.num || 'e' || hex(e.value ->> 'table') || 's' || hex(e.value ->> 'status')
                    FROM json_each(NEW.enrichment) e))
        FROM tenants t WHERE t.id = NEW.tenant_id;
END;
