-- The audit log: one row per thing done, never changed. `seq` numbers the
-- entries in the order they were written (the log's keyset, newest first);
-- AUTOINCREMENT so that a number is never given twice, even after a prune.
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id  TEXT NOT NULL,
    at_ms      INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    source     TEXT,
    channel    TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL,
    detail     TEXT NOT NULL
);
-- Every index of a rowid table ends with the row id (`seq`): each serves a
-- filter's pages newest first.
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id);
CREATE INDEX audit_log_by_actor ON audit_log (tenant_id, actor);
CREATE INDEX audit_log_by_action ON audit_log (tenant_id, action);
CREATE INDEX audit_log_by_time ON audit_log (at_ms);

-- Append-only: an update is refused; a delete only within a prune, which
-- writes its bound here in its own transaction (and removes it before it
-- commits), and only of entries older than that bound.
CREATE TABLE audit_prune (before_ms INTEGER NOT NULL);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
WHEN NOT EXISTS (SELECT 1 FROM audit_prune WHERE OLD.at_ms < audit_prune.before_ms)
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only: only entries past their retention are deleted');
END;
