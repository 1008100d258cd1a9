-- The operators' back office (issue 3): store status, key expiry and last
-- use, and the audit log of operator actions.
--
-- Every column added has a default or is nullable, so existing rows need no
-- rewrite; the UPDATEs give rows created before a status existed the status
-- the code already treats them as having.

-- +goose Up

ALTER TABLE stores ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
UPDATE merchants SET status = 'active' WHERE status = '';
UPDATE members SET status = 'active' WHERE status = '';

-- last_used_at is written in batches (at most every few seconds per
-- instance), never per request; expires_at ends a rotated key's overlap.
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;

-- The audit log: one row per operator action. seq orders it (newest first
-- when read); id is unique so that an entry written again by a retried
-- request (same derived id) is written once. before and after are JSON
-- documents without personal data (phones masked).
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    at           INTEGER NOT NULL,
    actor_key_id TEXT    NOT NULL DEFAULT '',
    actor_prefix TEXT    NOT NULL DEFAULT '',
    action       TEXT    NOT NULL,
    target_type  TEXT    NOT NULL,
    target_id    TEXT    NOT NULL,
    txn_id       TEXT    NOT NULL DEFAULT '',
    reason       TEXT    NOT NULL DEFAULT '',
    before       TEXT    NOT NULL DEFAULT '',
    after        TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX audit_log_target ON audit_log (target_id, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_key_id, seq);

-- +goose Down

DROP TABLE audit_log;
ALTER TABLE api_keys DROP COLUMN expires_at;
ALTER TABLE api_keys DROP COLUMN last_used_at;
ALTER TABLE stores DROP COLUMN status;
