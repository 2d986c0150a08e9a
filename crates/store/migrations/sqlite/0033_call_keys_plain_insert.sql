-- PostgreSQL's index of calls drops its conflict check at this version;
-- SQLite's (the FTS5 table of terms, one row per call) has none to drop.
SELECT 1;
