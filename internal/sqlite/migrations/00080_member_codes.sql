-- Rotating member codes: what a member shows at the till so that a
-- redemption needs the member present (docs/api.md, "Member codes").
--
-- member_codes holds each member's code secret, sealed like phone numbers
-- (AES-256-GCM under a key derived from the data key, internal/privacy), and
-- the short numeric reference a code carries so that the server finds its
-- member through an index, without trying secrets. Rows are made on a
-- member's first GET /v1/me/code and deleted at withdrawal.
--
-- member_code_uses records which merchant spent a member's code of one time
-- step on a redemption or a hold: another merchant is refused the same code,
-- on every instance. Rows older than a day are purged.
--
-- member_code_attempts counts code checks per API key and per member
-- (subject 'key:<id>' or 'member:<id>') over a window that starts at the
-- first counted attempt; a right code gives its attempt back.

-- +goose Up

CREATE TABLE member_codes (
    member_id  TEXT    PRIMARY KEY,
    ref        INTEGER NOT NULL UNIQUE,
    secret_enc BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE member_code_uses (
    member_id   TEXT    NOT NULL,
    step        INTEGER NOT NULL,
    merchant_id TEXT    NOT NULL,
    used_at     INTEGER NOT NULL,
    PRIMARY KEY (member_id, step)
) STRICT;
CREATE INDEX member_code_uses_at ON member_code_uses (used_at);

CREATE TABLE member_code_attempts (
    subject      TEXT    PRIMARY KEY,
    window_start INTEGER NOT NULL,
    attempts     INTEGER NOT NULL
) STRICT;

ALTER TABLE merchants ADD COLUMN require_member_code INTEGER NOT NULL DEFAULT 0;

-- +goose Down

ALTER TABLE merchants DROP COLUMN require_member_code;
DROP TABLE member_code_attempts;
DROP TABLE member_code_uses;
DROP TABLE member_codes;
