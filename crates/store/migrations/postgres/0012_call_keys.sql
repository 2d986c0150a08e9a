-- Filters that stay fast at millions of calls.
--
-- A call gets a sequence number, `seq`; calls are listed newest first by
-- (timestamp_ms, seq).
ALTER TABLE calls ADD COLUMN seq BIGSERIAL;
CREATE UNIQUE INDEX calls_by_seq ON calls (seq);
DROP INDEX calls_by_time;
CREATE INDEX calls_by_time ON calls (tenant_id, timestamp_ms DESC, seq DESC);
-- Replaced by call_keys, which also keeps each filter's matches in list order.
DROP INDEX calls_merged;

-- A tenant's number, short to repeat in every index entry.
ALTER TABLE tenants ADD COLUMN num BIGSERIAL;
CREATE UNIQUE INDEX tenants_by_num ON tenants (num);

-- The index of calls by key: one entry per metadata key (`m:KEY`, own and
-- added keys, a value's first 200 characters) and per enrichment result
-- (`e:TABLE`, its status), in list order within each (key, value). Written by
-- the trigger below in the transaction that writes the call. Byte order
-- ("C"), as on SQLite, for prefixes.
CREATE TABLE call_keys (
    tenant BIGINT NOT NULL,
    k      TEXT COLLATE "C" NOT NULL,
    v      TEXT COLLATE "C" NOT NULL,
    ts     BIGINT NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (tenant, k, v, ts, seq)
);

CREATE FUNCTION call_key_entries(call_tenant TEXT, call_merged JSONB, call_enrichment TEXT, call_ts BIGINT, call_seq BIGINT)
RETURNS TABLE (tenant BIGINT, k TEXT, v TEXT, ts BIGINT, seq BIGINT)
-- About as many rows as a call has keys: the planner then looks each one up.
LANGUAGE sql STABLE ROWS 20 AS $$
    SELECT t.num, 'm:' || j.key, substr(j.value, 1, 200), $4, $5
    FROM tenants t, jsonb_each_text($2) j
    WHERE t.id = $1
    UNION ALL
    SELECT t.num, 'e:' || (e ->> 'table'), e ->> 'status', $4, $5
    FROM tenants t, jsonb_array_elements($3::jsonb) e
    WHERE t.id = $1
$$;

INSERT INTO call_keys (tenant, k, v, ts, seq)
    SELECT e.* FROM calls c,
        call_key_entries(c.tenant_id, c.merged, c.enrichment, c.timestamp_ms, c.seq) e
    ON CONFLICT DO NOTHING;

-- One statement per statement, not per call: the call writer inserts a
-- whole group of calls in one statement.
CREATE FUNCTION call_keys_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_keys (tenant, k, v, ts, seq)
        SELECT e.* FROM new_calls c,
            call_key_entries(c.tenant_id, c.merged, c.enrichment, c.timestamp_ms, c.seq) e
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- A call changed or deleted: its old entries looked up one by one.
CREATE FUNCTION call_keys_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM call_keys
    WHERE tenant = (SELECT num FROM tenants WHERE id = OLD.tenant_id)
      AND ts = OLD.timestamp_ms AND seq = OLD.seq
      AND (k, v) IN (SELECT e.k, e.v
                     FROM call_key_entries(OLD.tenant_id, OLD.merged, OLD.enrichment, OLD.timestamp_ms, OLD.seq) e);
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO call_keys (tenant, k, v, ts, seq)
            SELECT * FROM call_key_entries(NEW.tenant_id, NEW.merged, NEW.enrichment, NEW.timestamp_ms, NEW.seq)
            ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER call_keys_insert AFTER INSERT ON calls REFERENCING NEW TABLE AS new_calls
    FOR EACH STATEMENT EXECUTE FUNCTION call_keys_insert();
CREATE TRIGGER call_keys_delete AFTER DELETE ON calls FOR EACH ROW EXECUTE FUNCTION call_keys_rewrite();
CREATE TRIGGER call_keys_update AFTER UPDATE OF merged, enrichment, timestamp_ms ON calls
    FOR EACH ROW EXECUTE FUNCTION call_keys_rewrite();
