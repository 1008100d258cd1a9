package ops

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pointd/pointd/internal/alert"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
)

const (
	adminKey  = "pd_live_admin0000000000000000000000000000"
	viewerKey = "pd_live_viewer000000000000000000000000000"
)

// keyring is the keys a test dashboard knows, by hash, with what each may
// do; revoke takes one away as the key store would.
type keyring struct {
	mu   sync.Mutex
	keys map[string]Access
}

func newKeyring() *keyring {
	return &keyring{keys: map[string]Access{
		string(auth.HashSecret(adminKey)): Admin, string(auth.HashSecret(viewerKey)): ReadOnly}}
}

func (k *keyring) check(_ context.Context, hash []byte) Access {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[string(hash)]
}

func (k *keyring) revoke(secret string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.keys, string(auth.HashSecret(secret)))
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeNow) Add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}

type staticAlerts []alert.Alert

func (s staticAlerts) Alerts() []alert.Alert { return s }

func newDash(t *testing.T, g prometheus.Gatherer, cfg Config) (*Dashboard, *httptest.Server, *fakeNow) {
	t.Helper()
	clk := &fakeNow{t: time.Date(2015, 10, 22, 16, 0, 0, 0, time.UTC)}
	cfg.Gatherer = g
	cfg.Now = clk.Now
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.CheckKey == nil {
		cfg.CheckKey = newKeyring().check
	}
	d := New(cfg)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return d, srv, clk
}

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoginSessionLogout(t *testing.T) {
	_, srv, clk := newDash(t, prometheus.NewRegistry(), Config{Title: "live · test"})
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)

	r, err := c.Get(srv.URL + "/ops")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(t, r); r.StatusCode != 401 || !strings.Contains(b, `name="key"`) || !strings.Contains(b, "live · test") {
		t.Fatalf("without a key: %d, want the login form: %s", r.StatusCode, b)
	}
	for _, p := range []string{"/ops/history", "/ops/stream"} {
		r, _ := c.Get(srv.URL + p)
		if r.StatusCode != 401 || r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s without a key: %d", p, r.StatusCode)
		}
		r.Body.Close()
	}

	r, _ = c.PostForm(srv.URL+"/ops/login", url.Values{"key": {"pd_live_wrong"}})
	if b := body(t, r); r.StatusCode != 401 || !strings.Contains(b, "not an admin or viewer key") || len(r.Cookies()) != 0 {
		t.Fatalf("wrong key: %d %v %s", r.StatusCode, r.Cookies(), b)
	}

	req, _ := http.NewRequest("POST", srv.URL+"/ops/login", strings.NewReader("key="+adminKey))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	r, _ = c.Do(req)
	if r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site login: %d", r.StatusCode)
	}
	r.Body.Close()

	r, _ = c.PostForm(srv.URL+"/ops/login", url.Values{"key": {adminKey}})
	r.Body.Close()
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ops" {
		t.Fatalf("login: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	ck := r.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/ops" || len(ck[0].Value) < 40 {
		t.Fatalf("session cookie %+v", ck)
	}
	if strings.Contains(ck[0].Value, adminKey) {
		t.Fatal("the cookie carries the key")
	}

	r, _ = c.Get(srv.URL + "/ops")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, `id="v-earns"`) {
		t.Fatalf("with the session: %d", r.StatusCode)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	r, _ = c.Get(srv.URL + "/ops/history")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, `"samples"`) {
		t.Fatalf("history with the session: %d %s", r.StatusCode, b)
	}

	// Idle for longer than the session allows: logged out.
	clk.Add(13 * time.Hour)
	r, _ = c.Get(srv.URL + "/ops/history")
	r.Body.Close()
	if r.StatusCode != 401 {
		t.Fatalf("after 13 idle hours: %d", r.StatusCode)
	}

	r, _ = c.PostForm(srv.URL+"/ops/login", url.Values{"key": {adminKey}})
	r.Body.Close()
	r, _ = c.PostForm(srv.URL+"/ops/logout", nil)
	r.Body.Close()
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	r, _ = c.Get(srv.URL + "/ops/history")
	r.Body.Close()
	if r.StatusCode != 401 {
		t.Fatalf("after logout: %d", r.StatusCode)
	}
}

func TestBearerAdminKey(t *testing.T) {
	_, srv, _ := newDash(t, prometheus.NewRegistry(), Config{})
	get := func(path, key string) *http.Response {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := get("/ops", adminKey)
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, "v-earns") {
		t.Errorf("/ops with an admin bearer key: %d", r.StatusCode)
	}
	r = get("/ops/history", adminKey)
	body(t, r)
	if r.StatusCode != 200 {
		t.Errorf("/ops/history with an admin bearer key: %d", r.StatusCode)
	}
	r = get("/ops", "pd_live_notadmin")
	if b := body(t, r); r.StatusCode != 401 || !strings.Contains(b, "does not carry an admin or viewer key") {
		t.Errorf("/ops with a wrong bearer key: %d %s", r.StatusCode, b)
	}
	r = get("/ops/static/app.js", "")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, "EventSource") {
		t.Errorf("the script: %d", r.StatusCode)
	}
	r = get("/ops/static/index.html", "")
	body(t, r)
	if r.StatusCode != 404 {
		t.Errorf("the page must not be reachable around the login: %d", r.StatusCode)
	}
}

// The stream sends each new sample once, and a reconnecting client gets
// what it missed (Last-Event-ID).
func TestStreamAndCatchUp(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, srv, clk := newDash(t, reg, Config{Alerts: staticAlerts{{Name: "KeyModeMismatch", State: alert.StateFiring, Severity: "critical"}}})
	for range 3 {
		clk.Add(time.Second)
		d.SampleNow()
	}
	open := func(lastID string) (*bufio.Reader, func()) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ops/stream", nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := r.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		return bufio.NewReader(r.Body), func() { cancel(); r.Body.Close() }
	}
	next := func(br *bufio.Reader) streamEvent {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				var ev streamEvent
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatal(err)
				}
				return ev
			}
		}
	}
	br, done := open("")
	if ev := next(br); ev.Sample.Seq != 3 || len(ev.Alerts) != 1 || ev.Alerts[0].Name != "KeyModeMismatch" {
		t.Fatalf("first event %+v, want the newest sample (3) with the alert", ev)
	}
	clk.Add(time.Second)
	d.SampleNow()
	if ev := next(br); ev.Sample.Seq != 4 {
		t.Fatalf("next event seq %d, want 4", ev.Sample.Seq)
	}
	done()

	br, done = open("2")
	defer done()
	for want := uint64(3); want <= 4; want++ {
		if ev := next(br); ev.Sample.Seq != want {
			t.Fatalf("catch-up seq %d, want %d", ev.Sample.Seq, want)
		}
	}
}

// Samples are computed from pointd's real metrics.
func TestSamplesFromMetrics(t *testing.T) {
	m := metrics.New()
	m.WatchWriteQueue(func() int { return 7 }, func() int { return 4096 })
	m.WatchDB(func() (int, int) { return 3, 4 })
	d, _, clk := newDash(t, m.Registry(), Config{History: 5})
	for range 8 {
		for range 40 {
			m.Operation(ledger.OpEarn, time.Millisecond, "committed")
			m.Request("POST /v1/earns", "POST", 201, "live", 4*time.Millisecond)
		}
		for range 10 {
			m.Operation(ledger.OpRedeem, time.Millisecond, "committed")
			m.Request("POST /v1/redemptions", "POST", 503, "live", 300*time.Millisecond)
			m.Refused(metrics.ReasonOverloaded)
		}
		m.Request("GET /metrics", "GET", 200, "none", time.Second) // not an API route: not in the latency
		clk.Add(time.Second)
		d.SampleNow()
	}
	ss := d.Samples()
	if len(ss) != 5 || ss[0].Seq != 4 || ss[4].Seq != 8 {
		t.Fatalf("ring of 5 holds seqs %d..%d (%d)", ss[0].Seq, ss[len(ss)-1].Seq, len(ss))
	}
	s := ss[4]
	near := func(got Num, want, tol float64) bool { return math.Abs(float64(got)-want) <= tol }
	if !near(s.Earns, 40, 0.01) || !near(s.Redeems, 10, 0.01) || !near(s.Requests, 51, 0.01) {
		t.Errorf("rates earns %v redeems %v rps %v", s.Earns, s.Redeems, s.Requests)
	}
	if !near(s.ErrPct, 1000.0/51, 0.01) || !near(s.RefPct, 1000.0/51, 0.01) {
		t.Errorf("err %v%% ref %v%%", s.ErrPct, s.RefPct)
	}
	if !(s.P50 > 2.5 && s.P50 <= 5) || !(s.P99 > 250 && s.P99 <= 500) {
		t.Errorf("p50 %v ms p99 %v ms", s.P50, s.P99)
	}
	if s.Queue != 7 || s.QueueCap != 4096 || s.DB != 3 || s.DBMax != 4 {
		t.Errorf("gauges %+v", s)
	}
	if s.HasCache || !math.IsNaN(float64(s.CachePct)) {
		t.Errorf("cache without cache metrics: %v %v", s.HasCache, s.CachePct)
	}
	if !(s.RSSMB > 1) || !(s.HeapMB > 0) {
		t.Errorf("memory %v %v", s.RSSMB, s.HeapMB)
	}
	b, _ := json.Marshal(s)
	if !strings.Contains(string(b), `"cache_pct":null`) || !strings.Contains(string(b), `"has_cache":false`) {
		t.Errorf("sample JSON %s", b)
	}

	// A cache appears: its hit ratio shows.
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: "pointd_cache_hits_total", Help: "h"})
	misses := prometheus.NewCounter(prometheus.CounterOpts{Name: "pointd_cache_misses_total", Help: "m"})
	m.Registry().MustRegister(hits, misses)
	d.SampleNow()
	hits.Add(90)
	misses.Add(10)
	clk.Add(time.Second)
	d.SampleNow()
	if s := d.Samples()[4]; !s.HasCache || !near(s.CachePct, 90, 0.01) {
		t.Errorf("cache %v %v", s.HasCache, s.CachePct)
	}
}

// Everything the page needs is in the binary: no CDN, fonts or scripts
// from anywhere else.
func TestEmbeddedOnly(t *testing.T) {
	err := fs.WalkDir(staticFS, "static", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, _ := staticFS.ReadFile(p)
		s := string(b)
		for _, bad := range []string{"http://", "https://", "src=\"//", "href=\"//", "@import", "@font-face"} {
			if strings.Contains(s, bad) {
				t.Errorf("%s contains %q", p, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// login opens a session with secret and returns a client that carries it.
func login(t *testing.T, srv *httptest.Server, secret string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	r, err := c.PostForm(srv.URL+"/ops/login", url.Values{"key": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusSeeOther || len(r.Cookies()) != 1 {
		t.Fatalf("login: %d %v", r.StatusCode, r.Cookies())
	}
	return c
}

// TestSessionEndsWithItsKey: a dashboard session is worth what its key is
// worth now. Revoked, the next request is refused, the page is the login
// form again, and an open stream ends.
func TestSessionEndsWithItsKey(t *testing.T) {
	keys := newKeyring()
	d, srv, _ := newDash(t, prometheus.NewRegistry(), Config{CheckKey: keys.check})
	d.SampleNow()
	c := login(t, srv, adminKey)
	r, _ := c.Get(srv.URL + "/ops/history")
	if b := body(t, r); r.StatusCode != 200 {
		t.Fatalf("history before the revocation: %d %s", r.StatusCode, b)
	}
	stream, err := c.Get(srv.URL + "/ops/stream")
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", err, stream)
	}
	defer stream.Body.Close()

	keys.revoke(adminKey)
	r, _ = c.Get(srv.URL + "/ops/history")
	if b := body(t, r); r.StatusCode != 401 {
		t.Errorf("history after the key was revoked: %d %s", r.StatusCode, b)
	}
	r, _ = c.Get(srv.URL + "/ops")
	if b := body(t, r); r.StatusCode != 401 || !strings.Contains(b, `name="key"`) {
		t.Errorf("/ops after the key was revoked: %d, want the login form: %.200s", r.StatusCode, b)
	}
	// The stream ends at its next sample: reading it to its end returns.
	d.SampleNow()
	if _, err := io.Copy(io.Discard, stream.Body); err != nil {
		t.Errorf("the stream after the revocation: %v", err)
	}
	// A bearer key revoked is refused too.
	req, _ := http.NewRequest("GET", srv.URL+"/ops/history", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	r, _ = http.DefaultClient.Do(req)
	if body(t, r); r.StatusCode != 401 {
		t.Errorf("history with a revoked bearer key: %d", r.StatusCode)
	}
}

// TestViewerReadOnly: a viewer key opens the dashboard and reads its data,
// marked read-only for the page; other roles' keys are not let in.
func TestViewerReadOnly(t *testing.T) {
	d, srv, _ := newDash(t, prometheus.NewRegistry(), Config{})
	d.SampleNow()
	c := login(t, srv, viewerKey)
	r, _ := c.Get(srv.URL + "/ops")
	if b := body(t, r); r.StatusCode != 200 || !strings.Contains(b, `id="v-earns"`) {
		t.Fatalf("/ops as a viewer: %d", r.StatusCode)
	}
	r, _ = c.Get(srv.URL + "/ops/history")
	var h struct {
		Access  string            `json:"access"`
		Samples []json.RawMessage `json:"samples"`
	}
	if err := json.NewDecoder(r.Body).Decode(&h); err != nil || r.StatusCode != 200 {
		t.Fatalf("history as a viewer: %d %v", r.StatusCode, err)
	}
	r.Body.Close()
	if h.Access != "read-only" || len(h.Samples) != 1 {
		t.Errorf("history as a viewer: access %q, %d samples", h.Access, len(h.Samples))
	}
	admin := login(t, srv, adminKey)
	r, _ = admin.Get(srv.URL + "/ops/history")
	if b := body(t, r); !strings.Contains(b, `"access":"admin"`) {
		t.Errorf("history as an admin: %.200s", b)
	}
}
