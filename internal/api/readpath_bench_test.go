package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/cache/redistest"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/sqlite"
)

// BenchmarkReadPath measures the read path against ping on the same server,
// over real HTTP (keep-alive, many connections): ping (no database work, the
// ceiling), the notice list, the same with a matching If-None-Match (a
// CDN's revalidation), one notice, badges and balances (rotating over 100
// members, all cached after their first read), on SQLite, PostgreSQL, and
// PostgreSQL with the caches in Redis. Compare req/s within one run:
//
//	go test -run '^$' -bench ReadPath -benchtime 3s ./internal/api/
func BenchmarkReadPath(b *testing.B) {
	for _, mode := range []string{"SQLite", "PostgreSQL", "PostgreSQL+Redis"} {
		b.Run(mode, func(b *testing.B) {
			env := newBenchEnv(b, mode)
			for _, c := range []struct {
				name, method string
				path         func(i int64) string
				header       map[string]string
				want         int
			}{
				{"ping", "POST", func(int64) string { return "/v1/ping" }, nil, 200},
				{"notices", "GET", func(int64) string { return "/v1/notices" }, nil, 200},
				{"notices_304", "GET", func(int64) string { return "/v1/notices" }, map[string]string{"If-None-Match": env.etag}, 304},
				{"notice", "GET", func(int64) string { return "/v1/notices/" + env.notice }, nil, 200},
				{"badges", "GET", func(i int64) string { return "/v1/members/" + env.members[i%100] + "/badges" }, nil, 200},
				{"balance", "GET", func(i int64) string { return "/v1/members/" + env.members[i%100] + "/balance" }, nil, 200},
			} {
				b.Run(c.name, func(b *testing.B) {
					var seq atomic.Int64
					b.SetParallelism(16) // 16 × GOMAXPROCS connections
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							st := env.do(b, c.method, c.path(seq.Add(1)), c.header)
							if st != c.want {
								b.Errorf("%s: %d", c.name, st)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				})
			}
		})
	}
}

type benchEnv struct {
	srv     *httptest.Server
	hc      *http.Client
	admin   string
	notice  string
	etag    string
	members []string
}

func newBenchEnv(b *testing.B, mode string) *benchEnv {
	b.Helper()
	ctx := context.Background()
	var store interface {
		ledger.Store
		auth.KeyStore
	}
	switch mode {
	case "SQLite":
		db, err := sqlite.Open(ctx, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		store = db
	default:
		db, err := postgres.Open(ctx, pgtest.DSN(b), 8)
		if err != nil {
			b.Fatal(err)
		}
		store = db
	}
	b.Cleanup(func() { store.Close() })
	var sh *cache.Shared
	if mode == "PostgreSQL+Redis" {
		rdb, prefix := redistest.New(b)
		sh = cache.NewShared(rdb, prefix, nil)
		sctx, cancel := context.WithCancel(ctx)
		b.Cleanup(cancel)
		if err := sh.Start(sctx); err != nil {
			b.Fatal(err)
		}
	}
	w := ledger.NewWriter(store, ledger.WriterConfig{})
	b.Cleanup(w.Close)
	secret, k := auth.NewSecret(auth.ModeLive)
	k.ID, k.Role = ledger.NewID(), auth.RoleAdmin
	if err := store.CreateKey(ctx, k); err != nil {
		b.Fatal(err)
	}
	s := New(Config{Shared: sh}, store, store, w, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	env := &benchEnv{srv: httptest.NewServer(s.Handler()), admin: secret}
	b.Cleanup(env.srv.Close)
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	env.hc = &http.Client{Transport: tr}
	b.Cleanup(tr.CloseIdleConnections)

	var n struct{ ID string }
	env.post(b, "/v1/notices", map[string]any{"title": "Double points", "body": "This weekend only.", "pinned": true}, &n)
	env.notice = n.ID
	env.post(b, "/v1/notices", map[string]any{"title": "Welcome", "body": "Thanks for joining."}, &n)
	for i := range 100 {
		var m struct{ ID string }
		env.post(b, "/v1/members", map[string]any{"phone": fmt.Sprintf("+1557%07d", i), "name": "Bench"}, &m)
		env.members = append(env.members, m.ID)
	}
	req, _ := http.NewRequest("GET", env.srv.URL+"/v1/notices", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := env.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	env.etag = resp.Header.Get("ETag")
	return env
}

func (e *benchEnv) post(b *testing.B, path string, body, out any) {
	b.Helper()
	j, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(j))
	req.Header.Set("Authorization", "Bearer "+e.admin)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", ledger.NewID())
	resp, err := e.hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		rb, _ := io.ReadAll(resp.Body)
		b.Fatalf("POST %s: %d %s", path, resp.StatusCode, rb)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		b.Fatal(err)
	}
}

var benchPing = []byte(`{"message":"bench"}`)

func (e *benchEnv) do(b *testing.B, method, path string, header map[string]string) int {
	var body io.Reader
	if method == "POST" {
		body = bytes.NewReader(benchPing)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	req.Header.Set("Authorization", "Bearer "+e.admin)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
