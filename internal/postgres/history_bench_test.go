package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// BenchmarkMemberHistory is internal/sqlite's benchmark of the same name on
// PostgreSQL: 1,000,000 transactions with two postings each; "heavy" has
// every tenth (100,000, one in seven a redeem, over about a year).
//
//	go test -run '^$' -bench MemberHistory -benchtime 200x ./internal/postgres/
func BenchmarkMemberHistory(b *testing.B) {
	ctx := context.Background()
	db := open(b)
	start := time.Now()
	const n = 1_000_000
	base := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	err := db.Exec(ctx, `
		INSERT INTO transactions (seq, id, type, member_id, merchant_id, store_id, receipt, purchase_amount,
		                          points, created_at, hash)
		SELECT i, 'txn-' || lpad(i::text, 7, '0'),
		       CASE WHEN i % 7 = 0 THEN 'redeem' ELSE 'earn' END,
		       CASE WHEN i % 10 = 3 THEN 'heavy' ELSE 'm' || (i % 10007) END,
		       'merchant', 'store', 'R' || i, 10000, 150, $2::timestamptz + i * interval '30 seconds', '\x00'::bytea
		FROM generate_series(1, $1::bigint) AS i`, n, base)
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

	deep := int64(n / 20) // 95% of the way down the heavy member's history
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
