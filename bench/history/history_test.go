// Package history benchmarks a member's history, GET
// /v1/members/{id}/transactions, on a ledger of a million transactions, on
// SQLite and on PostgreSQL, through the real HTTP handler.
//
// Generating the ledger takes minutes, so the benchmark runs only when asked:
//
//	POINTD_BENCH_HISTORY=1 go test -run '^$' -bench . -benchtime 200x -timeout 60m ./bench/history/
//
// POINTD_BENCH_HISTORY_TXNS sets the ledger's size (default 1000000),
// POINTD_TEST_DSN the PostgreSQL server (default the local one; the benchmark
// works in a schema of its own and drops it at the end).
package history

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointd/pointd/internal/api"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/sqlite"
)

type store interface {
	ledger.Store
	auth.KeyStore
}

// The shape of the generated ledger: earns at two merchants, spread over
// many members, one of whom (the "heavy" member, whose history is read) has
// a long history that alternates between the two merchants.
const (
	members     = 10_000
	heavyShare  = 50   // one transaction in heavyShare is the heavy member's
	batchSize   = 5000 // transactions per write transaction while generating
	defaultTxns = 1_000_000
)

func BenchmarkHistory(b *testing.B) {
	if os.Getenv("POINTD_BENCH_HISTORY") == "" {
		b.Skip("set POINTD_BENCH_HISTORY=1 to generate a ledger of a million transactions and read a member's history from it (minutes)")
	}
	n := defaultTxns
	if v := os.Getenv("POINTD_BENCH_HISTORY_TXNS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < heavyShare*50*4 {
			b.Fatalf("POINTD_BENCH_HISTORY_TXNS=%q: want a number of at least %d", v, heavyShare*50*4)
		}
	}
	for _, backend := range []string{"SQLite", "PostgreSQL"} {
		b.Run(backend, func(b *testing.B) {
			ctx := context.Background()
			var db store
			var dsn string
			if backend == "SQLite" {
				s, err := sqlite.Open(ctx, b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				db = s
			} else {
				dsn = pgtest.DSN(b)
				s, err := postgres.Open(ctx, dsn, 4)
				if err != nil {
					b.Fatal(err)
				}
				db = s
			}
			b.Cleanup(func() { db.Close() })
			w := generate(b, db, n)
			if dsn != "" {
				// What autovacuum does on its own some time after a bulk
				// load: without statistics the planner's estimates for the
				// postings join are off by four orders of magnitude.
				analyze(b, dsn)
			}
			srv := serve(b, db)

			admin := key(b, db, auth.Key{Role: auth.RoleAdmin})
			pos := key(b, db, auth.Key{Role: auth.RolePOS, MerchantID: w.merchants[0].ID})
			path := "/v1/members/" + w.heavy.ID + "/transactions"

			// The deep page is in the middle of the heavy member's history
			// (page 200 of 400 on a million transactions); its cursor is
			// found the way a client finds it.
			deepPage := w.heavyTxns / 50 / 2
			cursor := ""
			for range deepPage - 1 {
				p := get(b, srv, admin, path, cursor)
				if p.NextCursor == "" {
					b.Fatalf("the history ends before page %d", deepPage)
				}
				cursor = p.NextCursor
			}
			b.Logf("%s: %d transactions, the heavy member has %d; deep page = page %d of 50",
				backend, n, w.heavyTxns, deepPage)

			for _, c := range []struct {
				name, key, cursor string
			}{
				{"first_page", admin, ""},
				{"deep_page", admin, cursor},
				{"first_page_pos_key", pos, ""}, // half of the member's history is the key's merchant's
			} {
				b.Run(c.name, func(b *testing.B) {
					lat := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for range b.N {
						t0 := time.Now()
						p := get(b, srv, c.key, path, c.cursor)
						lat = append(lat, time.Since(t0))
						if len(p.Items) != 50 {
							b.Fatalf("%d items, want 50", len(p.Items))
						}
					}
					b.StopTimer()
					slices.Sort(lat)
					b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
					b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
				})
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type world struct {
	merchants [2]ledger.Merchant
	stores    [2]ledger.Shop
	heavy     ledger.Member
	heavyTxns int
}

// generate writes n earns through the store's batched write transaction,
// batchSize per transaction, hash-chained as the engine chains them, with
// their postings and balances. Lots are left out: history does not read
// them, and they would double the time it takes.
func generate(b *testing.B, db store, n int) world {
	b.Helper()
	ctx := context.Background()
	t0 := time.Now()
	created := ledger.MicroTime(time.Now().Add(-24 * time.Hour))
	var w world
	for i := range w.merchants {
		w.merchants[i] = ledger.Merchant{ID: ledger.NewID(), Name: fmt.Sprint("M", i), EarnRateBP: 100, PointValidityDays: 365,
			Status: "active", CreatedAt: created}
		if err := db.CreateMerchant(ctx, &w.merchants[i]); err != nil {
			b.Fatal(err)
		}
		w.stores[i] = ledger.Shop{ID: ledger.NewID(), MerchantID: w.merchants[i].ID, Name: "S", CreatedAt: created}
		if err := db.CreateStore(ctx, w.stores[i]); err != nil {
			b.Fatal(err)
		}
	}
	ms := make([]ledger.Member, members)
	for i := range ms {
		ms[i] = ledger.Member{ID: ledger.NewID(), CardNumber: fmt.Sprintf("94200%011d", i), Status: "active", CreatedAt: created}
		if err := db.CreateMember(ctx, &ms[i]); err != nil {
			b.Fatal(err)
		}
	}
	w.heavy = ms[0]

	done := 0
	for done < n {
		size := min(batchSize, n-done)
		err := db.Write(ctx, func(tx ledger.BatchTx) error {
			seq, hash, err := tx.Head(ctx)
			if err != nil {
				return err
			}
			ws := &ledger.WriteSet{Transactions: make([]ledger.Transaction, 0, size)}
			deltas := map[int64]int64{}
			for j := range size {
				i := done + j
				m := ms[1+i%(members-1)]
				if i%heavyShare == 0 {
					m = w.heavy
					w.heavyTxns++
				}
				k := i % 2
				if m.ID == w.heavy.ID {
					k = (i / heavyShare) % 2 // the heavy member alternates merchants
				}
				mer := w.merchants[k]
				points := int64(1 + i%97)
				t := ledger.Transaction{ID: ledger.NewID(), Seq: seq + 1, Type: ledger.TxEarn, MemberID: m.ID,
					MerchantID: mer.ID, StoreID: w.stores[k].ID, Receipt: "r" + strconv.Itoa(i),
					PurchaseAmount: points * 100, Points: points, CreatedAt: created.Add(time.Duration(i) * time.Millisecond),
					PrevHash: hash}
				t.Postings = []ledger.Posting{{AccountID: mer.IssuedAccount, Amount: -points}, {AccountID: m.AccountID, Amount: points}}
				if t.Postings[1].AccountID < t.Postings[0].AccountID {
					t.Postings[0], t.Postings[1] = t.Postings[1], t.Postings[0]
				}
				t.Hash = ledger.ChainHash(hash, &t)
				seq, hash = t.Seq, t.Hash
				ws.Transactions = append(ws.Transactions, t)
				deltas[mer.IssuedAccount] -= points
				deltas[m.AccountID] += points
			}
			for id, d := range deltas {
				ws.Accounts = append(ws.Accounts, ledger.AccountChange{ID: id, BalanceDelta: d})
			}
			slices.SortFunc(ws.Accounts, func(x, y ledger.AccountChange) int { return int(x.ID - y.ID) })
			ws.HeadSeq, ws.HeadHash = seq, hash
			return tx.Apply(ctx, ws)
		})
		if err != nil {
			b.Fatalf("generate: %v", err)
		}
		done += size
	}
	b.Logf("generated %d transactions in %s", n, time.Since(t0).Round(time.Second))
	return w
}

func analyze(b *testing.B, dsn string) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `ANALYZE transactions, postings`); err != nil {
		b.Fatal(err)
	}
}

func serve(b *testing.B, db store) *httptest.Server {
	b.Helper()
	wr := ledger.NewWriter(db, ledger.WriterConfig{})
	b.Cleanup(wr.Close)
	s := api.New(api.Config{}, db, db, wr, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	return srv
}

func key(b *testing.B, db store, k auth.Key) string {
	b.Helper()
	secret, nk := auth.NewSecret(auth.ModeLive)
	nk.ID, nk.Role, nk.MerchantID, nk.Name = ledger.NewID(), k.Role, k.MerchantID, "bench"
	if err := db.CreateKey(context.Background(), nk); err != nil {
		b.Fatal(err)
	}
	return secret
}

type page struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

func get(b *testing.B, srv *httptest.Server, key, path, cursor string) page {
	b.Helper()
	u := srv.URL + path
	if cursor != "" {
		u += "?cursor=" + cursor
	}
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	var p page
	if err := json.Unmarshal(body, &p); err != nil {
		b.Fatal(err)
	}
	return p
}
