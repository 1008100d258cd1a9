-- Indexes for incident repair (pointd incident, pointd reconcile).
--
-- Building an index blocks writes to the table while it runs: on a ledger
-- of many millions of transactions that is seconds to minutes. To avoid the
-- pause, build them beforehand with CREATE INDEX CONCURRENTLY and the same
-- names and definitions (docs/repair.md); IF NOT EXISTS then makes this
-- migration instant.

-- +goose Up

-- Transactions by creation time, ties by seq: the windows of pointd
-- incident and the time range of a reconciled receipts file.
CREATE INDEX IF NOT EXISTS transactions_created ON transactions (created_at, seq);
-- Adjustments, a few among many transactions: reconcile finds the
-- corrections it proposed earlier by their reason.
CREATE INDEX IF NOT EXISTS transactions_adjust ON transactions (seq) WHERE type = 'adjust';

-- +goose Down

DROP INDEX IF EXISTS transactions_adjust;
DROP INDEX IF EXISTS transactions_created;
