package surge

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DBRestartCommand restarts the machine's PostgreSQL cluster (db-restart).
const DBRestartCommand = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart"

// Result is what a run found.
type Result struct {
	RunID         string
	Discrepancies []Discrepancy
	Audit         string // output of pointd verify (spawned servers)
}

// Clean says whether the verdict is clean.
func (r *Result) Clean() bool { return len(r.Discrepancies) == 0 }

// Run rehearses a surge as cfg says, prints progress to stderr and the
// report to stdout, whose last line is the verdict. An error means the run
// could not take place (setup failed); the verdict is then unknown.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runID := newRunID()
	res := &Result{RunID: runID}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "surge: "+format+"\n", args...) }

	// The server, when surge starts it.
	var srv *server
	var proxy *pgProxy
	if cfg.Spawn != nil {
		bin := cfg.Binary
		if bin == "" {
			var err error
			if bin, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		logDir := cfg.LogDir
		if logDir == "" {
			var err error
			if logDir, err = os.MkdirTemp("", "pointd-surge-"); err != nil {
				return nil, err
			}
		}
		var err error
		if srv, err = newServer(bin, cfg.Spawn, logDir); err != nil {
			return nil, err
		}
		if hasFault(cfg.Faults, FaultDBSlow) {
			var dsn string
			if proxy, dsn, err = startProxy(spawnDB(cfg.Spawn)); err != nil {
				return nil, err
			}
			defer proxy.close()
			srv.setDB(dsn)
		}
		if cfg.AdminKey == "" {
			// Before the server starts: the key is there when it is ready.
			if cfg.AdminKey, err = srv.adminKey(ctx); err != nil {
				return nil, err
			}
		}
		if err := srv.start(ctx); err != nil {
			return nil, err
		}
		defer srv.kill()
		cfg.Target = srv.url()
		logf("started pointd serve on %s (logs in %s)", cfg.Target, logDir)
	}

	c := newClient(cfg.Target, cfg.RequestTimeout, 512, cfg.Seed)
	defer c.close()
	w := &workload{cfg: &cfg, runID: runID, c: c, admin: cfg.AdminKey,
		pol: retryPolicy{maxAttempts: 8, maxTotal: 45 * time.Second}}
	var nsb [4]byte
	_, _ = rand.Read(nsb[:])
	w.phoneNS = int64(uint32(nsb[0])<<16|uint32(nsb[1])<<8|uint32(nsb[2])) % 100_000

	rep := &report{cfg: cfg, runID: runID}
	if cfg.Baseline {
		logf("baseline: closed loop on POST /v1/ping")
		rep.pingRate = baseline(ctx, c, cfg.AdminKey, min(10*time.Second, max(2*time.Second, cfg.Duration/6)))
		logf("baseline: %.0f pings/s", rep.pingRate)
	}

	setupStart := time.Now()
	if err := w.setup(ctx); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	logf("run %s: %d stores of %d merchants, %d members set up in %s (names start with %q)",
		runID, len(w.stores), 2, w.memberCount(), time.Since(setupStart).Round(time.Millisecond), "surge-"+runID)

	// The load.
	start := time.Now()
	w.start = start
	w.tl = newTimeline(start)
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	go func() {
		select {
		case <-ctx.Done():
			stopLoad()
		case <-loadCtx.Done():
		}
	}()
	var bg sync.WaitGroup
	var stopBG atomic.Bool
	bg.Go(func() { scrape(&stopBG, c, w.tl) })
	bg.Go(func() { progress(&stopBG, w, stderr) })

	var faultWG sync.WaitGroup
	var faultErrs []string
	var faultMu sync.Mutex
	for _, f := range cfg.Faults {
		faultWG.Go(func() {
			select {
			case <-time.After(time.Until(start.Add(f.At))):
			case <-loadCtx.Done():
				return
			}
			note := func(s string) {
				w.tl.update(func(sec *second) { sec.Faults = append(sec.Faults, s) })
				logf("%s", s)
			}
			if err := inject(loadCtx, f, srv, c, proxy, note); err != nil {
				faultMu.Lock()
				faultErrs = append(faultErrs, fmt.Sprintf("%s: %v", f, err))
				faultMu.Unlock()
				logf("fault %s: %v", f, err)
			}
		})
	}

	// The notices of the read rushes, published as each rush begins.
	for i, r := range cfg.shape.Rushes {
		if !r.Notice {
			continue
		}
		faultWG.Go(func() {
			from, _ := r.window(cfg.Duration)
			select {
			case <-time.After(time.Until(start.Add(from))):
			case <-loadCtx.Done():
				return
			}
			if err := w.publishNotice(loadCtx, i, r); err != nil {
				faultMu.Lock()
				faultErrs = append(faultErrs, fmt.Sprintf("notice %d: %v", i, err))
				faultMu.Unlock()
				logf("notice %d: %v", i, err)
				return
			}
			w.tl.update(func(sec *second) { sec.Faults = append(sec.Faults, "notice") })
			logf("notice %d published: the badge rush begins", i)
		})
	}

	rng := mrand.New(mrand.NewPCG(cfg.Seed, 1))
	readRng := mrand.New(mrand.NewPCG(cfg.Seed, 2))
	var gen sync.WaitGroup
	gen.Go(func() { w.arrivals(loadCtx, start, rng, w.rateAt, w.session) })
	gen.Go(func() { w.arrivals(loadCtx, start, readRng, w.readRateAt, w.read) })
	if cfg.shape.Growth == "exponential" {
		gen.Go(func() { w.grow(loadCtx, start) })
	}
	gen.Wait()
	// Let the sessions under way finish their retries; a POS does not give up
	// because the rehearsal's clock ran out.
	drained := make(chan struct{})
	go func() { w.wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(90 * time.Second):
		stopLoad()
		<-drained
	}
	faultWG.Wait()
	loadEnd := time.Since(start)
	stopBG.Store(true)
	bg.Wait()
	c.dropPct.Store(0)
	if proxy != nil {
		proxy.delay.Store(0)
	}
	if srv != nil && !srv.running() {
		logf("the server is down after the faults: starting it again")
		if err := srv.start(context.Background()); err != nil {
			return nil, err
		}
	}

	// After the run: ask again for what is open, then check everything.
	vctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if n := w.unres.Load(); n > 0 {
		logf("asking again for %d operations without a definitive answer", n)
		w.resolve(vctx)
	}
	logf("checking %d acknowledged operations and %d members against the server", w.acked.Load(), w.memberCount())
	res.Discrepancies = w.verdict(vctx)
	for _, e := range faultErrs {
		res.Discrepancies = append(res.Discrepancies, Discrepancy{Kind: "fault_failed", Detail: e})
	}
	if srv != nil {
		if err := srv.stop(); err != nil {
			logf("stopping the server: %v", err)
		}
		out, err := srv.verify(vctx)
		res.Audit = strings.TrimSpace(out)
		if err != nil {
			n := 0
			for _, line := range strings.Split(out, "\n") {
				if d, ok := strings.CutPrefix(strings.TrimSpace(line), "DISCREPANCY "); ok {
					n++
					if n <= 20 {
						res.Discrepancies = append(res.Discrepancies, Discrepancy{Kind: KindAudit, Detail: d})
					}
				}
			}
			if n == 0 || n > 20 {
				res.Discrepancies = append(res.Discrepancies, Discrepancy{Kind: KindAudit,
					Detail: fmt.Sprintf("pointd verify failed (%v): %s", err, lastLine(out))})
			}
		}
	}

	rep.secs = w.tl.finish()
	rep.posLat, rep.readLat = w.tl.allLatencies()
	rep.loadTime = loadEnd
	rep.w = w
	rep.res = res
	rep.dropped = c.dropped.Load()
	rep.serverStarts = 0
	if srv != nil {
		rep.serverStarts = srv.starts
	}
	rep.text(stdout)
	if cfg.Report != "" {
		if err := os.WriteFile(cfg.Report, rep.html(), 0o644); err != nil {
			fmt.Fprintf(stdout, "report: cannot write %s: %v\n", cfg.Report, err)
		} else {
			fmt.Fprintf(stdout, "report: %s\n", cfg.Report)
		}
	}
	if res.Clean() {
		fmt.Fprintln(stdout, "verdict: clean")
	} else {
		fmt.Fprintf(stdout, "verdict: %d discrepancies\n", len(res.Discrepancies))
	}
	return res, nil
}

func newRunID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("0102") + hex.EncodeToString(b[:])
}

func hasFault(fs []Fault, kind string) bool {
	for _, f := range fs {
		if f.Kind == kind {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// inject performs one fault.
func inject(ctx context.Context, f Fault, srv *server, c *client, proxy *pgProxy, note func(string)) error {
	switch f.Kind {
	case FaultServerKill:
		note("fault: server-kill (SIGKILL)")
		srv.kill()
		time.Sleep(200 * time.Millisecond)
		t0 := time.Now()
		if err := srv.start(context.Background()); err != nil {
			return err
		}
		note(fmt.Sprintf("fault: server restarted, ready in %s", time.Since(t0).Round(time.Millisecond)))
	case FaultConnDrop:
		note(fmt.Sprintf("fault: conn-drop for %s (20%% of connections cut after a write)", f.For))
		c.dropPct.Store(200)
		wait(ctx, f.For)
		c.dropPct.Store(0)
		note("fault: conn-drop over")
	case FaultDBSlow:
		note(fmt.Sprintf("fault: db-slow for %s (+20ms per packet)", f.For))
		proxy.delay.Store(int64(20 * time.Millisecond))
		wait(ctx, f.For)
		proxy.delay.Store(0)
		note("fault: db-slow over")
	case FaultDBRestart:
		note("fault: db-restart: " + DBRestartCommand)
		out, err := exec.Command("sh", "-c", DBRestartCommand).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		note("fault: PostgreSQL restarted")
	}
	return nil
}

func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// setup creates the synthetic merchants, stores, POS keys and members.
func (w *workload) setup(ctx context.Context) error {
	pol := retryPolicy{maxAttempts: 10, maxTotal: 60 * time.Second}
	create := func(path, key, idem string, body any, out any) error {
		a, _, err := w.c.post(ctx, path, key, idem, jsonBody(body), pol, nil)
		if err != nil || a.status != http.StatusCreated {
			return fmt.Errorf("POST %s: HTTP %d %v %s", path, a.status, a.err, strings.TrimSpace(string(a.body)))
		}
		return json.Unmarshal(a.body, out)
	}
	var merchants []*merchantFx
	for i, rate := range []int64{150, 1234} {
		var m struct {
			ID string `json:"id"`
		}
		if err := create("/v1/merchants", w.admin, fmt.Sprintf("surge-%s-merchant-%d", w.runID, i),
			map[string]any{"name": fmt.Sprintf("surge-%s merchant %d", w.runID, i), "earn_rate_bp": rate, "point_validity_days": 365}, &m); err != nil {
			return err
		}
		merchants = append(merchants, &merchantFx{id: m.ID, rateBP: rate})
	}
	for i := range w.cfg.Stores {
		mf := merchants[i%len(merchants)]
		var s struct {
			ID string `json:"id"`
		}
		if err := create("/v1/merchants/"+mf.id+"/stores", w.admin, fmt.Sprintf("surge-%s-store-%d", w.runID, i),
			map[string]any{"name": fmt.Sprintf("surge-%s store %d", w.runID, i)}, &s); err != nil {
			return err
		}
		// A key creation cannot be replayed: each attempt has its own key.
		var k struct {
			Key string `json:"key"`
		}
		var err error
		for attempt := range 5 {
			err = create("/v1/keys", w.admin, fmt.Sprintf("surge-%s-key-%d-%d", w.runID, i, attempt),
				map[string]any{"role": "pos", "merchant_id": mf.id, "store_id": s.ID, "name": fmt.Sprintf("surge-%s pos %d", w.runID, i)}, &k)
			if err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		w.stores = append(w.stores, &storeFx{id: s.ID, merchant: mf, posKey: k.Key})
	}
	// The member app's backend. Its limit is the server's to find, not the
	// key's: a rush of app reads must meet admission control, not a 429.
	var k struct {
		Key string `json:"key"`
	}
	if err := create("/v1/keys", w.admin, fmt.Sprintf("surge-%s-app-key", w.runID),
		map[string]any{"role": "app", "name": fmt.Sprintf("surge-%s app", w.runID), "rate_limit_per_second": 1_000_000}, &k); err != nil {
		return err
	}
	w.appKey = k.Key
	return w.signups(ctx, w.membersAt(0))
}

// signups creates members until there are n, 16 at a time.
func (w *workload) signups(ctx context.Context, n int) error {
	need := n - w.memberCount()
	if need <= 0 {
		return nil
	}
	var wg sync.WaitGroup
	var first error
	var mu sync.Mutex
	sem := make(chan struct{}, 16)
	for range need {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := w.signup(ctx); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// grow signs members up along the profile's growth curve.
func (w *workload) grow(ctx context.Context, start time.Time) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		el := time.Since(start)
		if el >= w.cfg.Duration {
			return
		}
		_ = w.signups(ctx, w.membersAt(el)) // failures are counted, the load goes on
	}
}

// baseline measures POST /v1/ping, closed loop with 64 connections.
func baseline(ctx context.Context, c *client, key string, d time.Duration) float64 {
	var n atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				a := c.do(ctx, http.MethodPost, "/v1/ping", key, "", []byte(`{}`))
				if a.err == nil && a.status == http.StatusOK {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(n.Load()) / d.Seconds()
}

// scrape reads /metrics every second while the load runs.
func scrape(stop *atomic.Bool, c *client, tl *timeline) {
	hc := &http.Client{Timeout: 900 * time.Millisecond}
	for !stop.Load() {
		t0 := time.Now()
		resp, err := hc.Get(c.base + "/metrics")
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				vals := map[string]float64{}
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					line := sc.Text()
					for _, name := range []string{"pointd_db_connections_in_use", "pointd_db_connections_max", "pointd_ledger_write_queue_depth"} {
						if v, ok := strings.CutPrefix(line, name+" "); ok {
							if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
								vals[name] = f
							}
						}
					}
				}
				tl.update(func(s *second) {
					if v, ok := vals["pointd_db_connections_in_use"]; ok {
						s.DBInUse = v
					}
					if v, ok := vals["pointd_db_connections_max"]; ok {
						s.DBMax = v
					}
					if v, ok := vals["pointd_ledger_write_queue_depth"]; ok {
						s.QueueDepth = v
					}
				})
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if d := time.Second - time.Since(t0); d > 0 {
			time.Sleep(d)
		}
	}
}

// progress prints a line about the last second, every second.
func progress(stop *atomic.Bool, w *workload, stderr io.Writer) {
	for {
		time.Sleep(time.Second)
		if stop.Load() {
			return
		}
		now := time.Now()
		s, ok := w.tl.snapshot(now)
		if !ok {
			continue
		}
		el := now.Sub(w.tl.start).Truncate(time.Second)
		fmt.Fprintf(stderr, "[%5s] offered %4d/s served %4d/s acked %4d/s p50 %6s p99 %6s reads %5d/s errors %d refusals %d in-flight %d members %d\n",
			el, s.Offered, s.Served, s.Acked, fmtDur(s.P50), fmtDur(s.P99), s.Reads, s.Errors, sumRefusals(s.Refusals),
			w.inFlight.Load(), w.memberCount())
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
