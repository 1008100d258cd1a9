-- Every API key's own rate limit (issue 4): requests per second and the
-- burst, 0 meaning the server's defaults (--rate-limit-key), which is what
-- every key created before this migration keeps.

-- +goose Up

ALTER TABLE api_keys ADD COLUMN rate_limit_per_second integer NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN rate_limit_burst integer NOT NULL DEFAULT 0;

-- +goose Down

ALTER TABLE api_keys DROP COLUMN rate_limit_burst;
ALTER TABLE api_keys DROP COLUMN rate_limit_per_second;
