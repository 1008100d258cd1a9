-- The first schema of pointd on SQLite.
--
-- Conventions: ids are TEXT (UUIDv7 strings chosen by the caller) except
-- accounts, which are numbered here. Times are INTEGER microseconds since the
-- Unix epoch (UTC), NULL for "not set". Hashes are BLOBs. Optional strings are
-- NOT NULL DEFAULT '' so that what is read back is exactly what was written:
-- the hash chain covers them. Tables are STRICT, so a value of the wrong type
-- is refused instead of stored.
--
-- The ledger tables (transactions, postings, lots, holds, idempotency) carry
-- no foreign keys: the batched writer already checks every reference, and
-- the audit (pointd verify) is what proves the references sound, including
-- after someone edited the file behind pointd's back.

-- +goose Up

CREATE TABLE accounts (
    id       INTEGER PRIMARY KEY,
    kind     TEXT    NOT NULL, -- member, merchant_issued, merchant_redeemed, platform_*
    owner_id TEXT    NOT NULL DEFAULT '',
    balance  INTEGER NOT NULL DEFAULT 0,
    held     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (owner_id, kind)
) STRICT;

-- The platform accounts have fixed ids (ledger.AccountExpired,
-- ledger.AccountAdjustments); new accounts are numbered after them.
INSERT INTO accounts (id, kind) VALUES
    (1, 'platform_expired'),
    (2, 'platform_adjustments');

CREATE TABLE merchants (
    id                  TEXT    PRIMARY KEY,
    name                TEXT    NOT NULL DEFAULT '',
    earn_rate_bp        INTEGER NOT NULL,
    point_validity_days INTEGER NOT NULL,
    status              TEXT    NOT NULL DEFAULT '',
    issued_account      INTEGER NOT NULL REFERENCES accounts (id),
    redeemed_account    INTEGER NOT NULL REFERENCES accounts (id),
    created_at          INTEGER
) STRICT;

CREATE TABLE stores (
    id          TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL REFERENCES merchants (id),
    name        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER
) STRICT;
CREATE INDEX stores_merchant ON stores (merchant_id);

CREATE TABLE members (
    id          TEXT    PRIMARY KEY,
    card_number TEXT    NOT NULL UNIQUE,
    phone       TEXT    UNIQUE, -- NULL when the member gave none
    name        TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT '',
    account_id  INTEGER NOT NULL UNIQUE REFERENCES accounts (id),
    created_at  INTEGER
) STRICT;

-- seq is the rowid: the chain is stored in its own order, and a new
-- transaction is appended at the end of the table.
CREATE TABLE transactions (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,
    type               TEXT    NOT NULL,
    member_id          TEXT    NOT NULL DEFAULT '',
    merchant_id        TEXT    NOT NULL DEFAULT '',
    store_id           TEXT    NOT NULL DEFAULT '',
    receipt            TEXT    NOT NULL DEFAULT '',
    purchase_amount    INTEGER NOT NULL DEFAULT 0,
    points             INTEGER NOT NULL,
    ref_id             TEXT    NOT NULL DEFAULT '',
    reason             TEXT    NOT NULL DEFAULT '',
    created_at         INTEGER,
    restore_expires_at INTEGER,          -- NULL unless a redeem consumed lots
    prev_hash          BLOB,             -- NULL before the first transaction
    hash               BLOB    NOT NULL,
    cancelled_points   INTEGER NOT NULL DEFAULT 0,
    cancelled_amount   INTEGER NOT NULL DEFAULT 0
) STRICT;
-- A purchase earns at most once, ever.
CREATE UNIQUE INDEX transactions_earn_receipt ON transactions (merchant_id, store_id, receipt) WHERE type = 'earn';
-- A member's history, newest first.
CREATE INDEX transactions_member_seq ON transactions (member_id, seq);

CREATE TABLE postings (
    txn_id     TEXT    NOT NULL,
    account_id INTEGER NOT NULL,
    amount     INTEGER NOT NULL,
    PRIMARY KEY (txn_id, account_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE lots (
    id         TEXT    PRIMARY KEY, -- the transaction that created it
    member_id  TEXT    NOT NULL,
    points     INTEGER NOT NULL,
    remaining  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
-- A member's open lots, earliest expiry first: what a redemption consumes.
CREATE INDEX lots_member_open ON lots (member_id, expires_at, id) WHERE remaining > 0;
-- Open lots by expiry: what the expiry run finds due.
CREATE INDEX lots_due ON lots (expires_at, member_id) WHERE remaining > 0;

CREATE TABLE holds (
    id          TEXT    PRIMARY KEY, -- the hold transaction
    member_id   TEXT    NOT NULL,
    merchant_id TEXT    NOT NULL DEFAULT '',
    store_id    TEXT    NOT NULL DEFAULT '',
    points      INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER
) STRICT, WITHOUT ROWID;
-- Active holds by expiry: what the hold sweeper finds due.
CREATE INDEX holds_active_expiry ON holds (expires_at, id) WHERE status = 'active';

CREATE TABLE idempotency (
    scope        TEXT NOT NULL, -- the API key
    key          TEXT NOT NULL,
    request_hash BLOB,
    txn_id       TEXT NOT NULL DEFAULT '',
    response     BLOB,
    created_at   INTEGER,
    PRIMARY KEY (scope, key)
) STRICT;

-- The end of the hash chain: one row, rewritten by every batch.
CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB -- NULL while the ledger is empty
) STRICT;
INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, NULL);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    prefix      TEXT NOT NULL,
    hash        BLOB NOT NULL UNIQUE, -- SHA-256 of the key: how a presented key is found
    role        TEXT NOT NULL,
    mode        TEXT NOT NULL,
    merchant_id TEXT NOT NULL DEFAULT '',
    store_id    TEXT NOT NULL DEFAULT '',
    name        TEXT NOT NULL DEFAULT '',
    created_at  INTEGER,
    revoked_at  INTEGER -- NULL while the key works
) STRICT;

-- +goose Down

DROP TABLE api_keys;
DROP TABLE ledger_head;
DROP TABLE idempotency;
DROP TABLE holds;
DROP TABLE lots;
DROP TABLE postings;
DROP TABLE transactions;
DROP TABLE members;
DROP TABLE stores;
DROP TABLE merchants;
DROP TABLE accounts;
