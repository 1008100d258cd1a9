-- Idempotency records belong to what owns a key, not to the key: a POS
-- key's to its merchant and store ('pos:<merchant>/<store>'), any other
-- key's to the first key of its rotation chain (lineage, '' on that first
-- key), so that a retry under a rotated key replays instead of executing
-- again.

-- +goose Up

ALTER TABLE api_keys ADD COLUMN lineage TEXT NOT NULL DEFAULT '';

-- The chains of rotations made before the column: each rotation's audit
-- entry names the old key (target_id) and the new one (after.new_key_id).
WITH RECURSIVE rotated(old_id, new_id) AS (
    SELECT target_id, json_extract(after, '$.new_key_id') FROM audit_log
    WHERE action = 'key.rotate' AND json_valid(after) AND json_extract(after, '$.new_key_id') IS NOT NULL
), chain(root, id) AS (
    SELECT r.old_id, r.new_id FROM rotated r WHERE r.old_id NOT IN (SELECT new_id FROM rotated)
    UNION
    SELECT c.root, r.new_id FROM chain c JOIN rotated r ON r.old_id = c.id
)
UPDATE api_keys SET lineage = (SELECT root FROM chain WHERE chain.id = api_keys.id)
WHERE id IN (SELECT id FROM chain);

-- Records written under a key's own id move to its scope. Where two keys
-- of one scope used the same Idempotency-Key, the oldest record becomes
-- the scope's; the others stay under their key's id, where no lookup
-- reaches them any more.
WITH moves AS (
    SELECT i.scope AS old_scope, i.key AS key,
           CASE WHEN k.role = 'pos' THEN 'pos:' || k.merchant_id || '/' || k.store_id ELSE k.lineage END AS new_scope,
           i.created_at AS created_at
    FROM idempotency i JOIN api_keys k ON k.id = i.scope
    WHERE k.role = 'pos' OR k.lineage <> ''
), ranked AS (
    SELECT old_scope, key, new_scope,
           row_number() OVER (PARTITION BY new_scope, key ORDER BY created_at, old_scope) AS n
    FROM moves
)
UPDATE idempotency SET scope = ranked.new_scope
FROM ranked
WHERE idempotency.scope = ranked.old_scope AND idempotency.key = ranked.key AND ranked.n = 1
  AND NOT EXISTS (SELECT 1 FROM idempotency j WHERE j.scope = ranked.new_scope AND j.key = ranked.key);

-- +goose Down

ALTER TABLE api_keys DROP COLUMN lineage;
