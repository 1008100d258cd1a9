-- Phone numbers in E.164 (internal/phone): one number is one member however
-- it was written.
--
-- Rows written before this hold the sealed number and its lookup hash in the
-- old form (the digits, with a + when one was typed). Re-sealing and
-- re-hashing need the data key, which a SQL migration does not have: pointd
-- does it in Go when it opens the database with its key (DB.NormalizePhones,
-- run by serve and migrate), once, and records that it did in
-- data_migrations.
--
-- Two members whose numbers turn out to be one cannot both keep the lookup
-- hash (it is unique: a number finds one member). The older keeps it; each
-- later one keeps its sealed number and moves the hash to phone_dup_hash,
-- which is not unique and finds no one: it only lets pointd members
-- duplicates list them until an operator merges them. Nothing is merged
-- silently.

-- +goose Up

ALTER TABLE members ADD COLUMN phone_dup_hash BLOB;
CREATE INDEX members_phone_dup_hash ON members (phone_dup_hash) WHERE phone_dup_hash IS NOT NULL;

-- One row per change of data done in Go after the SQL migrations, by name.
CREATE TABLE data_migrations (
    name    TEXT    PRIMARY KEY,
    done_at INTEGER NOT NULL
) STRICT;

-- +goose Down

DROP TABLE data_migrations;
DROP INDEX members_phone_dup_hash;
ALTER TABLE members DROP COLUMN phone_dup_hash;
