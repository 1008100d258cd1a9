-- Notices and badges (issue 4): what operators publish to members, and when
-- each member last looked at their badges.

-- +goose Up

CREATE TABLE notices (
    id           text    COLLATE "C" PRIMARY KEY,
    title        text    NOT NULL,
    body         text    NOT NULL,
    image_url    text    NOT NULL DEFAULT '',
    pinned       boolean NOT NULL DEFAULT false,
    audience     text    NOT NULL,               -- all, merchant
    merchant_id  text    COLLATE "C" REFERENCES merchants (id), -- NULL for all members
    publish_at   timestamptz NOT NULL,
    ends_at      timestamptz,                    -- NULL: never ends
    ramp_seconds integer NOT NULL DEFAULT 0,
    created_at   timestamptz
);
-- The current notices (not ended): what every instance loads into memory.
CREATE INDEX notices_ends ON notices (ends_at);

-- A member's last look at their badges. Written in batches, a second or so
-- after the member looked (docs/design.md: what a crash loses).
CREATE TABLE badge_seen (
    member_id text COLLATE "C" PRIMARY KEY,
    seen_at   timestamptz NOT NULL
);

-- A member's active holds, for the badge that warns of expiring ones.
CREATE INDEX holds_member_active ON holds (member_id, expires_at) WHERE status = 'active';

-- +goose Down

DROP INDEX holds_member_active;
DROP TABLE badge_seen;
DROP TABLE notices;
