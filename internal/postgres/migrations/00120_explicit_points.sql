-- The explicit points a merchant's own keys may name on an earn instead of
-- earning by the rate. 0, the default, allows none: such an earn is an
-- adjustment in all but name.

-- +goose Up

ALTER TABLE merchants ADD COLUMN max_explicit_points bigint NOT NULL DEFAULT 0;

-- +goose Down

ALTER TABLE merchants DROP COLUMN max_explicit_points;
