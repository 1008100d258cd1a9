package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pointd/pointd/internal/alert"
	"github.com/pointd/pointd/internal/api"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/ops"
	"github.com/pointd/pointd/internal/sqlite"
)

var update = flag.Bool("update", false, "run a longer load and write the screenshot to docs/ops-dashboard.png")

// chromium is Debian's package: the test drives the browser that operators
// have, not one a library downloads.
const chromium = "/usr/bin/chromium"

// pointd is a real server: the API on SQLite with its batched writer and
// metrics, the alert engine on the built-in rules, and the dashboard —
// wired as cmd/pointd does it.
type pointd struct {
	t      *testing.T
	url    string
	admin  string
	client *http.Client
	seq    atomic.Int64

	store, member string
	members       []string
	pos           string
}

func startPointd(t *testing.T) *pointd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	db, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("open SQLite: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	mt := metrics.New()
	w := ledger.NewWriter(db, ledger.WriterConfig{Observer: mt, Logger: log})
	mt.WatchWriteQueue(w.QueueDepth, func() int { return ledger.DefaultWriterConfig().QueueSize })
	mt.WatchDB(func() (int, int) { wr, rd, mx := db.Stats(); return wr + rd, mx })
	srv := api.New(api.Config{Mode: auth.ModeLive, Metrics: mt}, db, db, w, log, nil)

	engine, err := alert.New(alert.Config{Gatherer: mt.Registry(), Registerer: mt.Registry(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	dash := ops.New(ops.Config{Gatherer: mt.Registry(), Alerts: engine, Title: "live · SQLite",
		CheckKey: ops.Keys(db, auth.ModeLive), Logger: log})

	root := http.NewServeMux()
	root.Handle("/ops", dash.Handler())
	root.Handle("/ops/", dash.Handler())
	root.Handle("/", srv.Handler())
	hs := httptest.NewServer(root)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); engine.Run(ctx) }()
	go func() { defer wg.Done(); dash.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		hs.CloseClientConnections()
		hs.Close()
		wg.Wait()
		w.Close()
		if rep, err := ledger.Verify(context.Background(), db.Audit()); err != nil || !rep.Sound() {
			t.Errorf("the ledger after the load: %v %+v", err, rep)
		}
		db.Close()
	})

	secret, k := auth.NewSecret(auth.ModeLive)
	k.ID, k.Role, k.Name = ledger.NewID(), auth.RoleAdmin, "ops test"
	if err := db.CreateKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	p := &pointd{t: t, url: hs.URL, admin: secret,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}}
	p.world()
	return p
}

func (p *pointd) call(method, path, key string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("idem-%d-%s", p.seq.Add(1), ledger.NewID()))
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (p *pointd) must(method, path, key string, body any, status int) map[string]any {
	p.t.Helper()
	code, b, err := p.call(method, path, key, body)
	if err != nil || code != status {
		p.t.Fatalf("%s %s: %d %s %v", method, path, code, b, err)
	}
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// world makes a merchant, a store, members and a POS key, through the API.
func (p *pointd) world() {
	m := p.must("POST", "/v1/merchants", p.admin, map[string]any{"name": "Daiso Gangnam", "earn_rate_bp": 200}, 201)
	s := p.must("POST", "/v1/merchants/"+m["id"].(string)+"/stores", p.admin, map[string]any{"name": "Gangnam station"}, 201)
	p.store = s["id"].(string)
	for i := range 20 {
		mb := p.must("POST", "/v1/members", p.admin, map[string]any{"phone": fmt.Sprintf("+8210555%05d", i), "name": "member"}, 201)
		p.members = append(p.members, mb["id"].(string))
	}
	p.member = p.members[0]
	k := p.must("POST", "/v1/keys", p.admin, map[string]any{"role": "pos", "merchant_id": m["id"], "name": "till 1"}, 201)
	p.pos = k["key"].(string)
}

// load runs earns (and a redemption for every eight) at rate(elapsed) per
// second until ctx ends.
func (p *pointd) load(ctx context.Context, rate func(time.Duration) float64) (done func() (ok, failed int64)) {
	var ok, failed atomic.Int64
	jobs := make(chan int64, 256)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				member := p.members[n%int64(len(p.members))]
				var code int
				var err error
				if n%8 == 7 {
					code, _, err = p.call("POST", "/v1/redemptions", p.pos, map[string]any{
						"member_id": member, "store_id": p.store, "receipt": fmt.Sprintf("R-%d", n), "points": 1})
				} else {
					code, _, err = p.call("POST", "/v1/earns", p.pos, map[string]any{
						"member_id": member, "store_id": p.store, "receipt": fmt.Sprintf("E-%d", n), "purchase_amount": 1000 + n%50*100})
				}
				if err == nil && code < 300 {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer close(jobs)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var n int64
		owed := 0.0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			owed += rate(time.Since(start)) / 100
			for ; owed >= 1; owed-- {
				select {
				case jobs <- n:
					n++
				default: // the server is slower than the rate: skip
				}
			}
		}
	}()
	return func() (int64, int64) {
		<-stopped
		wg.Wait()
		return ok.Load(), failed.Load()
	}
}

func TestDashboardInChromium(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard test drives Debian's Chromium at %s, and it is missing (%v): "+
			"install it with `apt-get install -y chromium` (scripts/test does)", chromium, err)
	}
	p := startPointd(t)

	profile, err := os.MkdirTemp("", "pointd-ops-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 { // Chromium's children may still write for a moment
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	timeout := 60 * time.Second
	if *update {
		timeout = 6 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1920, 1080),
	)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()

	// Script errors and refused loads (the CSP) fail the test.
	var consoleMu sync.Mutex
	var problems []string
	if err := chromedp.Do(tab, chromedp.EmulateViewport(1920, 1080)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(tab) {
			if err != nil {
				return
			}
			if m.IsException() || (m.Type == chromedp.ConsoleError && !strings.Contains(m.Text, "status of 401")) {
				consoleMu.Lock()
				problems = append(problems, m.String())
				consoleMu.Unlock()
			}
		}
	}()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}

	// Not logged in: the login form. Log in with the admin key.
	step("open /ops", chromedp.Navigate(p.url+"/ops"), chromedp.WaitVisible(chromedp.ID("key")))
	step("log in with a wrong key", chromedp.SendKeys(chromedp.ID("key"), "pd_live_notakey"))
	if _, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.ID("login"))); err != nil {
		t.Fatalf("submit: %v", err)
	}
	step("the refusal", chromedp.WaitVisible(chromedp.ID("error")))
	step("log in", chromedp.SendKeys(chromedp.ID("key"), p.admin))
	resp, err := chromedp.RunResponse(tab, chromedp.Click(chromedp.ID("login")))
	if err != nil || resp.Status != 200 {
		t.Fatalf("log in: %v %+v", err, resp)
	}
	step("the dashboard", chromedp.WaitVisible(chromedp.ID("v-earns")))
	step("the stream", chromedp.Poll[chromedp.Void](`document.getElementById("conn").textContent === "live"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	before := text("#v-earns")
	if v := parse(before); v > 0 {
		t.Fatalf("earns/s %q before any load", before)
	}

	// A load, and a test key against this live server.
	loadCtx, stopLoad := context.WithCancel(ctx)
	rate := func(time.Duration) float64 { return 150 }
	if *update {
		rate = screenshotRate
	}
	finish := p.load(loadCtx, rate)
	defer func() {
		stopLoad()
		ok, failed := finish()
		t.Logf("load: %d answered, %d failed", ok, failed)
	}()

	step("earns/s above zero", chromedp.Poll[chromedp.Void](
		`parseFloat(document.getElementById("v-earns").textContent.replace(/,/g, "")) > 0`,
		chromedp.WithPollingTimeout(15*time.Second)))
	if *update {
		time.Sleep(150 * time.Second) // let the charts fill
	}
	code, body, err := p.call("POST", "/v1/ping", "pd_test_"+strings.Repeat("x", 32), map[string]any{"message": "dev SDK"})
	if err != nil || code != 401 || !strings.Contains(string(body), "mismatch") {
		t.Fatalf("a test key against a live server: %d %s %v", code, body, err)
	}
	step("the firing alert", chromedp.Poll[chromedp.Void](
		`!!document.querySelector('#alerts.firing .alert.firing[data-name="KeyModeMismatch"]')`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if s := text("#alerts"); !strings.Contains(s, "KeyModeMismatch") || !strings.Contains(s, "wrong mode") {
		t.Errorf("the alert strip says %q", s)
	}

	// The numbers move while the load runs.
	first := parse(text("#v-earns"))
	step("p99 shown", chromedp.Poll[chromedp.Void](`isFinite(parseFloat(document.getElementById("v-p99").textContent))`,
		chromedp.WithPollingTimeout(10*time.Second)))
	for _, id := range []string{"#v-redeems", "#v-queue", "#v-db", "#v-cpu", "#v-mem"} {
		if s := text(id); s == "–" || s == "" {
			t.Errorf("%s shows %q under load", id, s)
		}
	}
	// The load's redemptions read their store through the directory cache
	// (a merchant may require member codes), so the ratio is a share.
	if s := text("#v-cache"); parse(s) < 0 || parse(s) > 100 || s == "n/a" {
		t.Errorf("cache hit ratio %q under a load that reads through the cache, want a share from 0 to 100", s)
	}
	if first <= 0 {
		t.Errorf("earns/s %v under load", first)
	}
	t.Logf("page: earns/s %s, p99 %s ms, DB %s%s", text("#v-earns"), text("#v-p99"), text("#v-db"), text("#v-dbmax"))

	// It fits a 1920×1080 wall screen without scrolling.
	fits, err := chromedp.Run(tab, chromedp.Evaluate[bool](
		`document.documentElement.scrollHeight <= innerHeight && document.documentElement.scrollWidth <= innerWidth && innerWidth === 1920`))
	if err != nil || !fits {
		t.Errorf("the page does not fit 1920×1080 without scrolling (%v)", err)
	}

	if *update {
		time.Sleep(3 * time.Second) // "firing for" a few seconds
		png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("..", "..", "docs", "ops-dashboard.png")
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(png))
	}

	// Log out: back to the form, and the stream is refused.
	step("log out", chromedp.Click(chromedp.CSS("button.logout")), chromedp.WaitVisible(chromedp.ID("key")))
	consoleMu.Lock()
	defer consoleMu.Unlock()
	for _, m := range problems {
		t.Errorf("browser console: %s", m)
	}
}

func parse(s string) float64 {
	var v float64
	if _, err := fmt.Sscan(strings.ReplaceAll(s, ",", ""), &v); err != nil {
		return math.NaN()
	}
	return v
}

// screenshotRate is the load of the screenshot run: a lunchtime ramp, a
// surge, and a settle.
func screenshotRate(d time.Duration) float64 {
	s := d.Seconds()
	switch {
	case s < 50:
		return 40 + 4*s
	case s < 80:
		return 240 + 160*math.Sin((s-50)/30*math.Pi)
	case s < 110:
		return 200 + 30*math.Sin(s/3)
	default:
		return 160 + 20*math.Sin(s/4)
	}
}
