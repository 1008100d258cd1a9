-- Members' side of issue 3: phone numbers sealed at rest, consents, withdrawal,
-- one-time login codes and member sessions.
--
-- Phone numbers move from members.phone (clear text) to phone_enc (AES-256-GCM,
-- see internal/privacy) and phone_hash (HMAC-SHA256, how a number is found).
-- Both need the data key, which a SQL migration does not have: rows that
-- still carry a clear phone are sealed by pointd itself right after it opens
-- the database with its key (DB.UsePhones), and their clear column is set
-- to NULL in the same transaction. members.phone is kept, always NULL from
-- then on, so that this migration can run on a live table without a rewrite.

-- +goose Up

ALTER TABLE members
    ADD COLUMN phone_enc           bytea,
    ADD COLUMN phone_hash          bytea,
    ADD COLUMN marketing_consent   boolean NOT NULL DEFAULT false,
    ADD COLUMN analytics_consent   boolean NOT NULL DEFAULT false,
    ADD COLUMN consents_updated_at timestamptz,
    ADD COLUMN withdrawn_at        timestamptz,
    ADD CONSTRAINT members_phone_hash_key UNIQUE (phone_hash);

CREATE TABLE member_otps (
    id         text COLLATE "C" PRIMARY KEY,
    phone_hash bytea       NOT NULL,
    code_hash  bytea       NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    used_at    timestamptz
);
CREATE INDEX member_otps_phone ON member_otps (phone_hash, created_at);

CREATE TABLE member_sessions (
    id         text COLLATE "C" PRIMARY KEY,
    hash       bytea       NOT NULL,
    prefix     text        NOT NULL,
    member_id  text COLLATE "C" NOT NULL,
    mode       text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    CONSTRAINT member_sessions_hash_key UNIQUE (hash)
);
CREATE INDEX member_sessions_member ON member_sessions (member_id);

-- +goose Down

DROP TABLE member_sessions;
DROP TABLE member_otps;
ALTER TABLE members
    DROP CONSTRAINT members_phone_hash_key,
    DROP COLUMN withdrawn_at,
    DROP COLUMN consents_updated_at,
    DROP COLUMN analytics_consent,
    DROP COLUMN marketing_consent,
    DROP COLUMN phone_hash,
    DROP COLUMN phone_enc;
