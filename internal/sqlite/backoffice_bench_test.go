package sqlite

import (
	"context"
	"testing"
)

// BenchmarkSearchMembers200k is an operator's search by part of a name over
// 200,000 members (the launch's ten days): a scan of the members table, since
// "contains" cannot use an index. ns/op is one page of 50.
func BenchmarkSearchMembers200k(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	// Accounts and members in two statements: 1 in 1000 is named "… Kimberly …".
	for _, q := range []string{
		`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
		 INSERT INTO accounts (id, kind, owner_id) SELECT 100 + i, 'member', 'm' || i FROM c`,
		`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200000)
		 INSERT INTO members (id, card_number, phone, name, status, account_id, created_at)
		 SELECT 'm' || printf('%07d', i), printf('94100%011d', i), '+8210' || printf('%08d', i),
		        CASE WHEN i % 1000 = 0 THEN 'Park Kimberly ' || i ELSE 'Lee Ji-woo ' || i END,
		        'active', 100 + i, 0 FROM c`,
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
