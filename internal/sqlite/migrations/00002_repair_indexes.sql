-- Indexes for incident repair (pointd incident, pointd reconcile).
--
-- IF NOT EXISTS: on a large ledger an operator may build them beforehand
-- (they are plain indexes), and this migration then finds them there.

-- +goose Up

-- Transactions by creation time: the windows of pointd incident and the
-- time range of a reconciled receipts file. seq, the rowid, ends every
-- index, so the index walks (created_at, seq) in order.
CREATE INDEX IF NOT EXISTS transactions_created ON transactions (created_at);
-- Adjustments, a few among many transactions: reconcile finds the
-- corrections it proposed earlier by their reason.
CREATE INDEX IF NOT EXISTS transactions_adjust ON transactions (seq) WHERE type = 'adjust';

-- +goose Down

DROP INDEX IF EXISTS transactions_adjust;
DROP INDEX IF EXISTS transactions_created;
