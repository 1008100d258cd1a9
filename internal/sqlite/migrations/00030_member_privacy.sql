-- Members' side of issue 3: phone numbers sealed at rest, consents, withdrawal,
-- one-time login codes and member sessions.
--
-- Phone numbers move from members.phone (clear text) to phone_enc (AES-256-GCM,
-- see internal/privacy) and phone_hash (HMAC-SHA256, how a number is found).
-- Both need the data key, which a SQL migration does not have: rows that
-- still carry a clear phone are sealed by pointd itself right after it opens
-- the database with its key (DB.UsePhones), and their clear column is set
-- to NULL in the same transaction. members.phone is kept (always NULL from
-- then on) because SQLite cannot drop a column with a UNIQUE constraint.

-- +goose Up

ALTER TABLE members ADD COLUMN phone_enc BLOB;
ALTER TABLE members ADD COLUMN phone_hash BLOB;
ALTER TABLE members ADD COLUMN marketing_consent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN analytics_consent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN consents_updated_at INTEGER;
ALTER TABLE members ADD COLUMN withdrawn_at INTEGER;
CREATE UNIQUE INDEX members_phone_hash ON members (phone_hash);

-- A login code: only its keyed hash is kept. used_at set: spent; attempts
-- counts wrong guesses (the code dies at the limit).
CREATE TABLE member_otps (
    id         TEXT    PRIMARY KEY,
    phone_hash BLOB    NOT NULL,
    code_hash  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER
) STRICT;
CREATE INDEX member_otps_phone ON member_otps (phone_hash, created_at);

-- A member's session: the token is never stored, only its SHA-256.
CREATE TABLE member_sessions (
    id         TEXT    PRIMARY KEY,
    hash       BLOB    NOT NULL UNIQUE,
    prefix     TEXT    NOT NULL,
    member_id  TEXT    NOT NULL,
    mode       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX member_sessions_member ON member_sessions (member_id);

-- +goose Down

DROP TABLE member_sessions;
DROP TABLE member_otps;
DROP INDEX members_phone_hash;
ALTER TABLE members DROP COLUMN withdrawn_at;
ALTER TABLE members DROP COLUMN consents_updated_at;
ALTER TABLE members DROP COLUMN analytics_consent;
ALTER TABLE members DROP COLUMN marketing_consent;
ALTER TABLE members DROP COLUMN phone_hash;
ALTER TABLE members DROP COLUMN phone_enc;
