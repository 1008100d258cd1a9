package postgres

import (
	"context"
	"testing"
)

// BenchmarkSearchMembers200k is an operator's search by part of a name over
// 200,000 members: a scan of the members table (ILIKE '%…%' cannot use a
// b-tree index). ns/op is one page of 50.
func BenchmarkSearchMembers200k(b *testing.B) {
	ctx := context.Background()
	db := open(b)
	for _, q := range []string{
		`INSERT INTO accounts (id, kind, owner_id) SELECT 100 + i, 'member', 'm' || i FROM generate_series(1, 200000) i`,
		`INSERT INTO members (id, card_number, phone, name, status, account_id, created_at)
		 SELECT 'm' || lpad(i::text, 7, '0'), '94100' || lpad(i::text, 11, '0'), '+8210' || lpad(i::text, 8, '0'),
		        CASE WHEN i % 1000 = 0 THEN 'Park Kimberly ' || i ELSE 'Lee Ji-woo ' || i END,
		        'active', 100 + i, now() FROM generate_series(1, 200000) i`,
		`ANALYZE members`,
	} {
		if err := db.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		ms, err := db.SearchMembers(ctx, "kimberly", "", 51)
		if err != nil || len(ms) != 51 {
			b.Fatalf("%d members, %v", len(ms), err)
		}
	}
}
