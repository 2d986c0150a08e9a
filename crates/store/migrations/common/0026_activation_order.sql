-- The order of a table's activations, so that of two activations in the
-- same millisecond the later is known: the version active at a call's
-- timestamp (`"as_of": "call_time"`) is the table's last activation at or
-- before it. Earlier rows keep 0; each new row takes the table's highest
-- number plus one, in the transaction that points the table at the version.
ALTER TABLE activations ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
