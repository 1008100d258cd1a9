-- The database remembers whether it is live or test, so that a server or a
-- command of the other mode refuses to open it (a test server must never
-- read live members). The mode is written when the database is created, by
-- the first process that migrates it. A database made before the mode was
-- recorded takes the mode of its API keys when they all share one; with no
-- keys, or keys of both modes, the first server or command of this version
-- that opens it records its own mode.

-- +goose Up
CREATE TABLE pointd_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

INSERT INTO pointd_meta (key, value)
SELECT 'mode', min(mode) FROM api_keys HAVING count(*) > 0 AND count(DISTINCT mode) = 1;

-- +goose Down
DROP TABLE pointd_meta;
