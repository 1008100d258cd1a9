-- Notices and badges (issue 4): what operators publish to members, and when
-- each member last looked at their badges.

-- +goose Up

CREATE TABLE notices (
    id           TEXT    PRIMARY KEY,
    title        TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    image_url    TEXT    NOT NULL DEFAULT '',
    pinned       INTEGER NOT NULL DEFAULT 0, -- 0 or 1
    audience     TEXT    NOT NULL,           -- all, merchant
    merchant_id  TEXT    REFERENCES merchants (id), -- NULL for all members
    publish_at   INTEGER NOT NULL,
    ends_at      INTEGER,                    -- NULL: never ends
    ramp_seconds INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER
) STRICT;
-- The current notices (not ended): what every instance loads into memory.
CREATE INDEX notices_ends ON notices (ends_at);

-- A member's last look at their badges. Written in batches, a second or so
-- after the member looked (docs/design.md: what a crash loses).
CREATE TABLE badge_seen (
    member_id TEXT    PRIMARY KEY,
    seen_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- A member's active holds, for the badge that warns of expiring ones.
CREATE INDEX holds_member_active ON holds (member_id, expires_at) WHERE status = 'active';

-- +goose Down

DROP INDEX holds_member_active;
DROP TABLE badge_seen;
DROP TABLE notices;
