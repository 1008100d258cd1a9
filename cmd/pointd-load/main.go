// Command pointd-load is a closed-loop HTTP load generator for pointd: N
// connections each send a request, wait for the answer, and send the next.
// It sets up its own merchant, store, members and POS key through the API,
// then for each connection count measures POST /v1/ping (no database work:
// the ceiling) and POST /v1/earns (every request a new receipt and a new
// Idempotency-Key), and prints requests/s, p50, p99, errors by status, the
// earn/ping ratio and the maxima of the numbers /readyz reports during each
// run (db_conns_in_use, db_conns_max, write_queue, … whatever it has).
//
//	go run ./cmd/pointd-load --target http://127.0.0.1:7070 --admin-key pd_live_… --conns 1,16,64 --duration 10s
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pointd-load:", err)
		os.Exit(1)
	}
}

type config struct {
	target   string
	adminKey string
	conns    []int
	duration time.Duration
	warmup   time.Duration
	endpoint string
	members  int
	timeout  time.Duration
	rateBP   int64
	setup    bool
	keyRate  int

	// --endpoint overload (overload.go)
	capacity    float64
	startRate   float64
	growth      float64
	step        time.Duration
	p99Goal     time.Duration
	factor      float64
	overloadFor time.Duration
	maxInFlight int
	client      string // raw or net/http
	maxConns    int
	cpuProfile  string

	rounds int
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("pointd-load", flag.ContinueOnError)
	fs.StringVar(&c.target, "target", envOr("POINTD_LOAD_TARGET", "http://127.0.0.1:7070"), "base URL of the server")
	fs.StringVar(&c.adminKey, "admin-key", os.Getenv("POINTD_ADMIN_KEY"), "an admin API key (default $POINTD_ADMIN_KEY)")
	conns := fs.String("conns", "1,16,64", "connection counts to measure, comma separated")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "measured time of each run")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured time before each run")
	fs.StringVar(&c.endpoint, "endpoint", "both", "earn, ping, both, or overload (open loop: capacity, then --factor × capacity)")
	fs.IntVar(&c.members, "members", 1000, "members the earns rotate over")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "client timeout of one request")
	fs.Int64Var(&c.rateBP, "earn-rate-bp", 100, "earn rate of the synthetic merchant")
	fs.BoolVar(&c.setup, "setup-only", false, "only set up, and print POINTD_KEY, POINTD_STORE, POINTD_MEMBERS and POINTD_RUN\n"+
		"as shell assignments (for bench/earn.lua: eval \"$(pointd-load --setup-only …)\")")
	fs.IntVar(&c.keyRate, "key-rate", 1_000_000, "rate_limit_per_second of the POS key it creates (high: measure the server, not the key's limit)")
	fs.Float64Var(&c.capacity, "capacity", 0, "overload: the capacity in earns/s, skipping the search (0: search)")
	fs.Float64Var(&c.startRate, "start-rate", 500, "overload: the first offered rate of the capacity search, earns/s")
	fs.Float64Var(&c.growth, "growth", 1.25, "overload: the factor between two steps of the capacity search")
	fs.DurationVar(&c.step, "step", 5*time.Second, "overload: how long each step of the capacity search lasts")
	fs.DurationVar(&c.p99Goal, "p99-goal", 100*time.Millisecond, "overload: the p99 a step must keep to count as held")
	fs.Float64Var(&c.factor, "factor", 3, "overload: offered load as a multiple of the capacity")
	fs.DurationVar(&c.overloadFor, "overload-for", 60*time.Second, "overload: how long the overload lasts")
	fs.IntVar(&c.maxInFlight, "max-in-flight", 20_000, "overload: requests the client keeps in flight at most (more are counted as not sent)")
	fs.StringVar(&c.client, "client", "raw", "overload: the earns' HTTP client, raw (lean HTTP/1.1, http:// targets) or net/http")
	fs.IntVar(&c.maxConns, "max-conns", 2048, "overload, raw client: connections at most, as a crowd is a fixed number of terminals (a request due while all are busy waits, counted as lag)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file (where its CPU goes)")
	fs.IntVar(&c.rounds, "rounds", 1, "ping/earn pairs per connection count: on a machine shared with other work,\n"+
		"the median of several back-to-back pairs' ratios moves less than one pair's")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 10_000 {
			return c, fmt.Errorf("--conns: %q is not a count from 1 to 10000", s)
		}
		c.conns = append(c.conns, n)
	}
	switch c.endpoint {
	case "earn", "ping", "both", "overload", "probe":
	default:
		return c, fmt.Errorf("--endpoint must be earn, ping, both or overload, got %q", c.endpoint)
	}
	if c.maxConns < 1 {
		return c, errors.New("--max-conns must be positive")
	}
	if c.client != "raw" && c.client != "net/http" {
		return c, fmt.Errorf("--client must be raw or net/http, got %q", c.client)
	}
	if c.adminKey == "" {
		return c, errors.New("--admin-key (or $POINTD_ADMIN_KEY) is required: create one with 'pointd keys create --role admin'")
	}
	if c.startRate <= 0 || c.growth <= 1 || c.step <= 0 || c.p99Goal <= 0 || c.factor <= 0 || c.overloadFor <= 0 ||
		c.maxInFlight < 1 || c.capacity < 0 || c.keyRate < 0 {
		return c, errors.New("overload flags: --start-rate, --step, --p99-goal, --factor, --overload-for, --max-in-flight must be positive, --growth above 1")
	}
	if c.duration <= 0 || c.members < 1 || c.timeout <= 0 || c.rounds < 1 {
		return c, errors.New("--duration, --members, --timeout and --rounds must be positive")
	}
	c.target = strings.TrimRight(c.target, "/")
	return c, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	runID := randomHex(4)
	setupClient := &http.Client{Timeout: 30 * time.Second}
	if cfg.endpoint == "probe" { // the overload mode's prober, a process of its own
		return runProbe(cfg)
	}
	if cfg.setup {
		fx, err := setUp(setupClient, cfg, runID)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		fmt.Printf("export POINTD_KEY=%s POINTD_STORE=%s POINTD_RUN=%s\n", fx.pos, fx.storeID, runID)
		fmt.Printf("export POINTD_MEMBERS=%s\n", strings.Join(fx.members, ","))
		return nil
	}
	fmt.Printf("target %s, run %s\n", cfg.target, runID)

	var fx fixture
	if cfg.endpoint != "ping" {
		t0 := time.Now()
		fx, err = setUp(setupClient, cfg, runID)
		if err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		fmt.Printf("set up merchant %s, store %s, %d members, a POS key in %s\n",
			fx.merchantID, fx.storeID, len(fx.members), time.Since(t0).Round(time.Millisecond))
	} else {
		fx.pos = cfg.adminKey // ping takes any key
	}

	if cfg.endpoint == "overload" {
		return runOverload(cfg, &fx, runID)
	}

	var results []result
	for _, n := range cfg.conns {
		for round := 1; round <= cfg.rounds; round++ {
			for _, ep := range []string{"ping", "earn"} {
				if cfg.endpoint != "both" && cfg.endpoint != ep {
					continue
				}
				key := fx.pos
				if ep == "ping" && key == "" {
					key = cfg.adminKey
				}
				r := measure(cfg, ep, n, round, key, &fx, runID)
				r.round = round
				results = append(results, r)
				fmt.Fprintf(os.Stderr, "  %s conns=%d round %d: %.0f req/s\n", ep, n, round, r.rps())
			}
		}
	}
	report(os.Stdout, cfg, results)
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- setup through the API ----

type fixture struct {
	pos        string
	merchantID string
	storeID    string
	members    []string
	// bodyHead[i] is the earn body up to the receipt's value, for member i.
	bodyHead [][]byte
}

func post(hc *http.Client, cfg config, key, path, idem string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, cfg.target+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", idem)
		resp, err := hc.Do(req)
		var status int
		var b []byte
		if err == nil {
			status = resp.StatusCode
			b, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if (err != nil || status == http.StatusServiceUnavailable) && attempt < 5 {
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
			continue // same key, same body: safe to ask again
		}
		if err != nil {
			return fmt.Errorf("POST %s: %w", path, err)
		}
		if status != http.StatusCreated {
			return &httpError{status: status, path: path, body: strings.TrimSpace(string(b))}
		}
		return json.Unmarshal(b, out)
	}
}

type httpError struct {
	status int
	path   string
	body   string
}

func (e *httpError) Error() string {
	return fmt.Sprintf("POST %s: HTTP %d: %s", e.path, e.status, e.body)
}

func setUp(hc *http.Client, cfg config, runID string) (fixture, error) {
	var fx fixture
	var idOut struct {
		ID  string `json:"id"`
		Key string `json:"key"`
	}
	if err := post(hc, cfg, cfg.adminKey, "/v1/merchants", "load-merchant-"+runID,
		map[string]any{"name": "Load Test Merchant " + runID, "earn_rate_bp": cfg.rateBP, "point_validity_days": 365}, &idOut); err != nil {
		return fx, err
	}
	fx.merchantID = idOut.ID
	if err := post(hc, cfg, cfg.adminKey, "/v1/merchants/"+fx.merchantID+"/stores", "load-store-"+runID,
		map[string]any{"name": "Load Test Store " + runID}, &idOut); err != nil {
		return fx, err
	}
	fx.storeID = idOut.ID
	if err := post(hc, cfg, cfg.adminKey, "/v1/keys", "load-pos-key-"+runID,
		map[string]any{"role": "pos", "merchant_id": fx.merchantID, "name": "pointd-load " + runID, "rate_limit_per_second": cfg.keyRate}, &idOut); err != nil {
		return fx, err
	}
	fx.pos = idOut.Key

	// Members, a few at a time. Phones are random per run; on the rare
	// clash with an earlier run's member, another is drawn.
	fx.members = make([]string, cfg.members)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.members {
					return
				}
				var m struct {
					ID string `json:"id"`
				}
				var err error
				for try := 0; try < 5; try++ {
					phone := fmt.Sprintf("+1%05d%05d", randomInt(100_000), i%100_000)
					err = post(hc, cfg, fx.pos, "/v1/members", fmt.Sprintf("load-member-%s-%d-%d", runID, i, try),
						map[string]any{"phone": phone, "name": fmt.Sprintf("Load Member %d", i)}, &m)
					var he *httpError
					if !errors.As(err, &he) || he.status != http.StatusConflict {
						break
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				fx.members[i] = m.ID
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return fx, firstErr
	}
	fx.bodyHead = make([][]byte, len(fx.members))
	for i, id := range fx.members {
		fx.bodyHead[i] = []byte(`{"member_id":"` + id + `","store_id":"` + fx.storeID + `","receipt":"`)
	}
	return fx, nil
}

func randomInt(n int) int {
	var b [8]byte
	_, _ = rand.Read(b[:])
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return int(v % uint64(n))
}

// ---- one measured run ----

type result struct {
	round    int
	endpoint string
	conns    int
	took     time.Duration
	count    int            // answered requests in the measured window
	ok       int            // of which successful (200 ping, 201 earn)
	errors   map[string]int // by status, "net" for no answer
	lat      []time.Duration
	readyz   map[string]float64 // maxima seen
	readyErr string
}

func (r result) rps() float64 {
	if r.took <= 0 {
		return 0
	}
	return float64(r.ok) / r.took.Seconds()
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat)-1) * p)
	return r.lat[i]
}

type worker struct {
	lat    []time.Duration
	ok     int
	count  int
	errors map[string]int
}

var pingBody = []byte(`{"message":"pointd-load"}`)

func measure(cfg config, endpoint string, conns, round int, key string, fx *fixture, runID string) result {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: cfg.timeout}
	auth := "Bearer " + key
	url := cfg.target + "/v1/ping"
	want := http.StatusOK
	if endpoint == "earn" {
		url, want = cfg.target+"/v1/earns", http.StatusCreated
	}
	// The round is part of every receipt and Idempotency-Key: without it a
	// second round repeated the first one's keys, and its earns were replays
	// (answered from the stored record, nothing written) counted as earns.
	prefix := "L" + runID + "-" + endpoint + strconv.Itoa(conns) + "r" + strconv.Itoa(round) + "-"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var measuring atomic.Bool
	var seq atomic.Int64
	workers := make([]*worker, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wk := &worker{lat: make([]time.Duration, 0, 4096), errors: map[string]int{}}
		workers[w] = wk
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 256)
			var idem []byte
			for ctx.Err() == nil {
				n := seq.Add(1)
				idem = strconv.AppendInt(append(idem[:0], prefix...), n, 10)
				body := pingBody
				if endpoint == "earn" {
					m := int(n % int64(len(fx.bodyHead)))
					buf = append(buf[:0], fx.bodyHead[m]...)
					buf = append(buf, idem...)
					buf = append(buf, `","purchase_amount":`...)
					buf = strconv.AppendInt(buf, 100+n%9900, 10)
					buf = append(buf, '}')
					body = buf
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				req.Header["Authorization"] = []string{auth}
				req.Header["Content-Type"] = []string{"application/json"}
				req.Header["Idempotency-Key"] = []string{string(idem)}
				start := time.Now()
				resp, err := hc.Do(req)
				status, replayed := 0, false
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
					replayed = resp.Header.Get("Idempotent-Replayed") == "true"
				}
				took := time.Since(start)
				if ctx.Err() != nil || !measuring.Load() {
					continue
				}
				if err != nil {
					wk.errors["net"]++
					continue
				}
				wk.count++
				wk.lat = append(wk.lat, took)
				switch {
				case replayed: // every request is new: a replay means the load repeated itself
					wk.errors["replayed"]++
				case status == want:
					wk.ok++
				default:
					wk.errors[strconv.Itoa(status)]++
				}
			}
		}()
	}

	// /readyz sampler: the maxima of every number it reports.
	maxima := map[string]float64{}
	var readyErr string
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		rc := &http.Client{Timeout: 2 * time.Second}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if !measuring.Load() {
				continue
			}
			if err := sampleReadyz(rc, cfg.target, maxima); err != nil {
				readyErr = err.Error()
			}
		}
	}()

	time.Sleep(cfg.warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(cfg.duration)
	measuring.Store(false)
	took := time.Since(start)
	cancel()
	wg.Wait()
	<-samplerDone

	r := result{endpoint: endpoint, conns: conns, took: took, errors: map[string]int{}, readyz: maxima, readyErr: readyErr}
	for _, wk := range workers {
		r.count += wk.count
		r.ok += wk.ok
		r.lat = append(r.lat, wk.lat...)
		for k, v := range wk.errors {
			r.errors[k] += v
		}
	}
	slices.Sort(r.lat)
	return r
}

func sampleReadyz(hc *http.Client, target string, maxima map[string]float64) error {
	resp, err := hc.Get(target + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return fmt.Errorf("/readyz: HTTP %d, not JSON: %v", resp.StatusCode, err)
	}
	for k, v := range m {
		if f, ok := v.(float64); ok {
			if old, seen := maxima[k]; !seen || f > old {
				maxima[k] = f
			}
		}
	}
	return nil
}

// ---- the report ----

func report(out io.Writer, cfg config, results []result) {
	fmt.Fprintf(out, "\n%s, %s per run after %s warm-up\n\n", cfg.target, cfg.duration, cfg.warmup)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "endpoint\tconns\tround\treq/s\tp50\tp99\terrors\t/readyz max\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t\n", r.endpoint, r.conns, r.round, r.rps(),
			fmtDur(r.pct(0.50)), fmtDur(r.pct(0.99)), fmtErrors(r.errors), fmtReadyz(r))
	}
	tw.Flush()

	// One line per ping/earn pair, measured back to back, and with several
	// rounds the median ratio per connection count.
	type pair struct{ ping, earn *result }
	pairs := map[[2]int]*pair{}
	for i := range results {
		r := &results[i]
		k := [2]int{r.conns, r.round}
		if pairs[k] == nil {
			pairs[k] = &pair{}
		}
		if r.endpoint == "ping" {
			pairs[k].ping = r
		} else {
			pairs[k].earn = r
		}
	}
	var lines []string
	for _, n := range cfg.conns {
		var ratios []float64
		for round := 1; round <= cfg.rounds; round++ {
			p := pairs[[2]int{n, round}]
			if p == nil || p.ping == nil || p.earn == nil || p.ping.rps() <= 0 {
				continue
			}
			ratio := p.earn.rps() / p.ping.rps()
			ratios = append(ratios, ratio)
			lines = append(lines, fmt.Sprintf("%d\t%d\t%.0f\t%.0f\t%.2f\t", n, round, p.ping.rps(), p.earn.rps(), ratio))
		}
		if len(ratios) > 1 {
			slices.Sort(ratios)
			lines = append(lines, fmt.Sprintf("%d\tmedian\t\t\t%.2f\t(min %.2f, max %.2f)", n, median(ratios), ratios[0], ratios[len(ratios)-1]))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintln(out)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "conns\tround\tping req/s\tearn req/s\tearn/ping\t")
		for _, l := range lines {
			fmt.Fprintln(tw, l)
		}
		tw.Flush()
	}
}

// median of sorted values.
func median(v []float64) float64 {
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func fmtErrors(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func fmtReadyz(r result) string {
	if len(r.readyz) == 0 {
		if r.readyErr != "" {
			return "unreadable"
		}
		return "-"
	}
	keys := make([]string, 0, len(r.readyz))
	for k := range r.readyz {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%g", k, r.readyz[k]))
	}
	return strings.Join(parts, " ")
}
