package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// BenchmarkMemberHistory reads a member's history (GET /v1/me/transactions
// and /v1/members/{id}/transactions) on a ledger of 1,000,000 transactions
// with two postings each, written straight into the tables (the read does
// not care how they got there). One member, "heavy", has every tenth
// transaction (100,000, one in seven a redeem, over about a year); the rest
// are spread over 10,007 members.
//
//	go test -run '^$' -bench MemberHistory -benchtime 200x ./internal/sqlite/
func BenchmarkMemberHistory(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	start := time.Now()
	const n = 1_000_000
	base := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	err = db.Exec(ctx, `
		WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
		INSERT INTO transactions (seq, id, type, member_id, merchant_id, store_id, receipt, purchase_amount,
		                          points, created_at, hash)
		SELECT i, printf('txn-%07d', i),
		       CASE WHEN i % 7 = 0 THEN 'redeem' ELSE 'earn' END,
		       CASE WHEN i % 10 = 3 THEN 'heavy' ELSE 'm' || (i % 10007) END,
		       'merchant', 'store', 'R' || i, 10000, 150, ? + i * 30000000, x'00'
		FROM g`, n, base.UnixMicro())
	if err == nil {
		err = db.Exec(ctx, `
			INSERT INTO postings (txn_id, account_id, amount)
			SELECT id, 10, -points FROM transactions UNION ALL SELECT id, 11, points FROM transactions`)
	}
	if err == nil {
		err = db.Exec(ctx, `ANALYZE`)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d transactions in %v", n, time.Since(start).Round(time.Second))

	// The deep page: 95% of the way down the heavy member's history.
	deep := int64(n / 20)
	month := member.HistoryFilter{From: base.AddDate(0, 3, 0), To: base.AddDate(0, 4, 0)}
	for _, bc := range []struct {
		name   string
		before int64
		f      member.HistoryFilter
	}{
		{"first page", 0, member.HistoryFilter{}},
		{"deep page", deep, member.HistoryFilter{}},
		{"first page of redeems", 0, member.HistoryFilter{Types: []ledger.TxType{ledger.TxRedeem}}},
		{"deep page of redeems", deep, member.HistoryFilter{Types: []ledger.TxType{ledger.TxRedeem}}},
		{"a month 8 months back", 0, month},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				txns, err := db.History(ctx, "heavy", bc.f, bc.before, 51)
				if err != nil || len(txns) != 51 {
					b.Fatalf("%d transactions, %v", len(txns), err)
				}
			}
		})
	}
	b.Run("first page, unfiltered store method", func(b *testing.B) {
		for b.Loop() {
			txns, err := db.MemberTransactions(ctx, "heavy", 0, 51)
			if err != nil || len(txns) != 51 {
				b.Fatalf("%d transactions, %v", len(txns), err)
			}
		}
	})
}
