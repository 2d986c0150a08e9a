-- A session also ends after a time without use: when it was last used and
-- how long it may rest. Sessions opened before this have neither and end now.
ALTER TABLE web_sessions ADD COLUMN last_seen_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE web_sessions ADD COLUMN idle_ms BIGINT NOT NULL DEFAULT 0;
