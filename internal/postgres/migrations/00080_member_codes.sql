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
--
-- The new merchants column has a constant default: added without a rewrite.

-- +goose Up

CREATE TABLE member_codes (
    member_id  text COLLATE "C" PRIMARY KEY,
    ref        bigint      NOT NULL,
    secret_enc bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT member_codes_ref_key UNIQUE (ref)
);

CREATE TABLE member_code_uses (
    member_id   text COLLATE "C" NOT NULL,
    step        bigint      NOT NULL,
    merchant_id text COLLATE "C" NOT NULL,
    used_at     timestamptz NOT NULL,
    PRIMARY KEY (member_id, step)
);
CREATE INDEX member_code_uses_at ON member_code_uses (used_at);

CREATE TABLE member_code_attempts (
    subject      text COLLATE "C" PRIMARY KEY,
    window_start timestamptz NOT NULL,
    attempts     integer     NOT NULL
);

ALTER TABLE merchants ADD COLUMN require_member_code boolean NOT NULL DEFAULT false;

-- +goose Down

ALTER TABLE merchants DROP COLUMN require_member_code;
DROP TABLE member_code_attempts;
DROP TABLE member_code_uses;
DROP TABLE member_codes;
