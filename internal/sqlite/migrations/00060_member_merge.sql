-- Merging two members who are one person: the merged member keeps its row
-- (its history, its card number) with status 'merged' and the member it
-- went into. A merge re-points the members merged into the one it merges,
-- so merged_into always names a member that is not merged itself: one
-- lookup finds where a card number or a history now belongs.

-- +goose Up

ALTER TABLE members ADD COLUMN merged_into TEXT NOT NULL DEFAULT '';
-- The members merged into one: what its history and a later merge read.
CREATE INDEX members_merged_into ON members (merged_into) WHERE merged_into <> '';

-- +goose Down

DROP INDEX members_merged_into;
ALTER TABLE members DROP COLUMN merged_into;
