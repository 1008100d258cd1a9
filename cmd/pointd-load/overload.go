package main

// The overload mode (--endpoint overload): what shows the behaviour under overload
// for the earn path, with an open-loop load (requests are sent on a
// schedule, whether or not earlier ones were answered, as a crowd does).
//
//  1. Capacity: offered earn rates rising by --growth from --start-rate,
//     --step each, until two steps in a row miss; the capacity is the
//     highest goodput of a step that answered at least 95 % of what it was
//     offered with 201 and kept the p99 of those under --p99-goal (100 ms).
//  2. Overload: --factor (3) times that capacity for --overload-for (60 s),
//     reporting goodput against capacity, the p99 of accepted earns and of
//     refusals, the most database connections in use (from /metrics), and
//     the slowest /healthz answer (probed every 20 ms).
//  3. Check: every earn whose outcome was left open (no answer, a 503 other
//     than "overloaded") is asked again with the same Idempotency-Key until
//     it is decided; then every member's history must hold every
//     acknowledged earn exactly once and nothing else of this run.
//
// Latencies are measured from when a request was sent to when its answer
// was read. The client's own delay — from when a request was due to when it
// was sent, which grows when the machine is short of CPU — is reported
// beside them as "lag": on a machine shared with the server, add it to read
// the latency a crowd of separate clients would see.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// outcome kinds of one earn
const (
	kindOK       = iota // 201
	kindRefused         // 503 overloaded or 429: refused at once, not written
	kindOpen            // no answer, or a 503 that leaves the outcome open
	kindRejected        // any other answer: a failure of the benchmark
)

type earnResult struct {
	kind    int
	status  string
	lat     time.Duration
	lag     time.Duration // from when it was due to when the client sent it
	purch   int           // index into the run's purchases
	txID    string
	points  int64
	receipt string
}

type purchaseRec struct {
	member int
	idem   string
	body   []byte
}

type olRun struct {
	cfg   config
	fx    *fixture
	hc    *http.Client
	raw   *rawClient // --client raw (the default); nil: hc
	url   string
	auth  string
	runID string

	mu        sync.Mutex
	purchases []purchaseRec
	acked     map[string]earnResult // by receipt
	open      []int                 // purchases to ask again
	rejected  map[string]int
}

type stepStats struct {
	offered  float64
	took     time.Duration
	sent     int
	ok       int
	refused  int
	open     int
	rejected int
	dropped  int // not sent: the client had too many requests in flight
	okLat    []time.Duration
	refLat   []time.Duration
	lags     []time.Duration
	statuses map[string]int
}

func (s stepStats) goodput() float64 { return float64(s.ok) / s.took.Seconds() }

func pctl(l []time.Duration, p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	return l[int(float64(len(l)-1)*p)]
}

func runOverload(cfg config, fx *fixture, runID string) error {
	tr := &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	r := &olRun{cfg: cfg, fx: fx, hc: &http.Client{Transport: tr, Timeout: cfg.timeout},
		url: cfg.target + "/v1/earns", auth: "Bearer " + fx.pos, runID: runID,
		acked: map[string]earnResult{}, rejected: map[string]int{}}
	if cfg.client == "raw" {
		raw, err := newRawClient(cfg.target, "/v1/earns", r.auth, cfg.timeout, cfg.maxConns)
		if err != nil {
			return err
		}
		defer raw.closeIdle()
		r.raw = raw
	}
	fmt.Printf("client: %s, at most %d connections\n", cfg.client, cfg.maxConns)

	capacity := cfg.capacity
	if capacity <= 0 {
		fmt.Printf("\ncapacity search: open-loop earns from %.0f/s, ×%.2f per %s step, until fewer than 95%% succeed or their p99 reaches %s\n\n",
			cfg.startRate, cfg.growth, cfg.step, cfg.p99Goal)
		fmt.Printf("%10s %10s %8s %9s %9s %9s %5s %6s %6s %s\n", "offered/s", "goodput/s", "ok %", "p50 ok", "p99 ok", "p99 lag",
			"cpu", "server", "client", "answers")
		missed := 0
		for rate := cfg.startRate; ; rate *= cfg.growth {
			c0 := takeCPU()
			c0.server = scrape(cfg.target)["process_cpu_seconds_total"]
			s := r.openLoop(rate, cfg.step)
			c1 := takeCPU()
			c1.server = scrape(cfg.target)["process_cpu_seconds_total"]
			okShare := float64(s.ok) / float64(max(1, s.sent+s.dropped))
			p99 := pctl(s.okLat, 0.99)
			srv, cli := c0.cores(c1)
			fmt.Printf("%10.0f %10.0f %7.1f%% %9s %9s %9s %5s %6s %6s %s\n", rate, s.goodput(), 100*okShare,
				fmtDur(pctl(s.okLat, 0.5)), fmtDur(p99), fmtDur(pctl(s.lags, 0.99)), c0.busyShare(c1), srv, cli, fmtErrors(s.statuses))
			// A machine shared with other work has bad seconds: the search
			// ends after two missed steps in a row, not at the first.
			if okShare < 0.95 || p99 >= cfg.p99Goal {
				if missed++; missed == 2 {
					break
				}
			} else {
				missed = 0
				capacity = max(capacity, s.goodput())
			}
			time.Sleep(time.Second) // let the queue drain between steps
		}
		if capacity == 0 {
			return fmt.Errorf("no step met the goal; lower --start-rate")
		}
	}
	fmt.Printf("\ncapacity: %.0f earns/s with p99 < %s\n", capacity, cfg.p99Goal)

	offered := capacity * cfg.factor
	fmt.Printf("\noverload: offering %.0f earns/s (%.1f× capacity) for %s\n", offered, cfg.factor, cfg.overloadFor)
	time.Sleep(2 * time.Second)
	before := scrape(cfg.target)
	cpu0 := takeCPU()
	cpu0.server = before["process_cpu_seconds_total"]
	// The prober is a process of its own, as a load balancer's health
	// check is: inside this one, its requests would wait behind the
	// thousands of goroutines of the load for a CPU.
	probeOut, probeDone, err := startProber(cfg.target, cfg.overloadFor)
	if err != nil {
		return err
	}
	s := r.openLoop(offered, cfg.overloadFor)
	<-probeDone
	after := scrape(cfg.target)
	var pr prober
	if err := json.Unmarshal(probeOut.Bytes(), &pr); err != nil {
		return fmt.Errorf("the prober answered %q: %v", probeOut.String(), err)
	}

	good := s.goodput()
	fmt.Printf("\n%-34s %s\n", "offered", fmt.Sprintf("%.0f/s (%d sent, %d not sent: client limit)", s.offered, s.sent, s.dropped))
	row := func(name, value, goal string, ok bool) {
		verdict := "ok"
		if !ok {
			verdict = "MISSED"
		}
		fmt.Printf("%-34s %-28s goal %-12s %s\n", name, value, goal, verdict)
	}
	row("goodput", fmt.Sprintf("%.0f/s = %.0f%% of capacity", good, 100*good/capacity), "≥ 90%", good >= 0.9*capacity)
	row("p99 of accepted earns", fmtDur(pctl(s.okLat, 0.99)), "< 200ms", pctl(s.okLat, 0.99) < 200*time.Millisecond)
	row("p99 of refusals (503/429)", fmt.Sprintf("%s (p50 %s, %d refused)", fmtDur(pctl(s.refLat, 0.99)), fmtDur(pctl(s.refLat, 0.5)), s.refused), "< 10ms",
		pctl(s.refLat, 0.99) < 10*time.Millisecond)
	row("DB connections in use, max", fmt.Sprintf("%g of %g", pr.DBInUse, pr.DBMax), "≤ bound", pr.DBMax > 0 && pr.DBInUse <= pr.DBMax)
	row("/healthz slowest answer", fmt.Sprintf("%s (%d probes, %d failed)", fmtDur(pr.HealthMax), pr.HealthN, pr.HealthFail),
		"< 50ms", pr.HealthMax < 50*time.Millisecond && pr.HealthFail == 0)
	fmt.Printf("%-34s %s\n", "answers", fmtErrors(s.statuses))
	if pr.LimitHi > 0 {
		fmt.Printf("%-34s from %g to %g\n", "ledger_write admission limit", pr.LimitLo, pr.LimitHi)
	}
	for _, route := range []string{"POST /v1/earns", "GET /healthz"} {
		p99, worst := histDelta(before, after, "pointd_http_request_duration_seconds", `route="`+route+`"`)
		fmt.Printf("%-34s p99 ≤ %s, slowest ≤ %s (the server's own histogram: arrival to end of handler, all answers)\n",
			"server-side "+route, p99, worst)
	}
	p99, worst := histDelta(before, after, "pointd_ledger_queue_wait_seconds")
	batches := delta(before, after, "pointd_ledger_batch_size_count")
	fmt.Printf("%-34s %.0f batches of %.1f on average; queue wait p99 ≤ %s, slowest ≤ %s\n", "server-side ledger writer",
		batches, delta(before, after, "pointd_ledger_batch_size_sum")/max(1, batches), p99, worst)
	fmt.Printf("%-34s %.0f by admission (ledger_write), %.0f in all as overloaded\n", "server-side refusals",
		delta(before, after, `pointd_admission_refusals_total{class="ledger_write"}`),
		delta(before, after, `pointd_refusals_total{reason="overloaded"}`))
	cpu1 := takeCPU()
	cpu1.server = after["process_cpu_seconds_total"]
	fmt.Printf("%-34s %s\n", "CPU during the overload", cpu0.report(cpu1))
	fmt.Printf("%-34s %s (from when a request was due to when the client sent it: the client's own delay, part of every latency above)\n",
		"client lag p99", fmtDur(pctl(s.lags, 0.99)))
	if s.rejected > 0 {
		fmt.Printf("UNEXPECTED answers: %d (see above)\n", s.rejected)
	}

	fmt.Printf("\ncheck: asking again the %d earns whose outcome was left open, then reading every member's history\n", len(r.open))
	return r.check()
}

// openLoop offers rate earns per second for d.
func (r *olRun) openLoop(rate float64, d time.Duration) stepStats {
	s := stepStats{offered: rate, statuses: map[string]int{}}
	results := make(chan earnResult, 4096)
	var inFlight atomic.Int64
	var wg sync.WaitGroup
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for res := range results {
			s.statuses[res.status]++
			s.lags = append(s.lags, res.lag)
			switch res.kind {
			case kindOK:
				s.ok++
				s.okLat = append(s.okLat, res.lat)
				r.mu.Lock()
				r.acked[res.receipt] = res
				r.mu.Unlock()
			case kindRefused:
				s.refused++
				s.refLat = append(s.refLat, res.lat)
			case kindOpen:
				s.open++
				r.mu.Lock()
				r.open = append(r.open, res.purch)
				r.mu.Unlock()
			default:
				s.rejected++
			}
		}
	}()
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	end := start.Add(d)
	next := start
	for next.Before(end) {
		now := time.Now()
		for !next.After(now) && next.Before(end) {
			if inFlight.Load() >= int64(r.cfg.maxInFlight) {
				s.dropped++
			} else {
				p := r.newPurchase()
				inFlight.Add(1)
				wg.Add(1)
				s.sent++
				go func(due time.Time) {
					defer wg.Done()
					defer inFlight.Add(-1)
					results <- r.send(p, due)
				}(next)
			}
			next = next.Add(interval)
		}
		time.Sleep(200 * time.Microsecond)
	}
	s.took = time.Since(start)
	wg.Wait()
	close(results)
	<-collected
	slices.Sort(s.okLat)
	slices.Sort(s.refLat)
	slices.Sort(s.lags)
	return s
}

func (r *olRun) newPurchase() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.purchases)
	m := n % len(r.fx.bodyHead)
	idem := "O" + r.runID + "-" + strconv.Itoa(n)
	body := append([]byte(nil), r.fx.bodyHead[m]...)
	body = append(body, idem...)
	body = append(body, `","purchase_amount":`...)
	body = strconv.AppendInt(body, int64(100+n%9900), 10)
	body = append(body, '}')
	r.purchases = append(r.purchases, purchaseRec{member: m, idem: idem, body: body})
	return n
}

func (r *olRun) send(n int, due time.Time) earnResult {
	r.mu.Lock()
	p := r.purchases[n]
	r.mu.Unlock()
	if r.raw != nil {
		r.raw.acquire() // a terminal of the crowd: waiting for one is lag
		defer r.raw.release()
		sent := time.Now()
		res := earnResult{purch: n, receipt: p.idem, lag: sent.Sub(due)}
		status, body, err := r.raw.post(p.idem, p.body)
		res.lat = time.Since(sent)
		if err != nil {
			res.kind, res.status = kindOpen, "net"
			return res
		}
		res.status = strconv.Itoa(status)
		return classify(res, status, body)
	}
	req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(p.body))
	req.Header["Authorization"] = []string{r.auth}
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Idempotency-Key"] = []string{p.idem}
	sent := time.Now()
	res := earnResult{purch: n, receipt: p.idem, lag: sent.Sub(due)}
	resp, err := r.hc.Do(req)
	if err != nil {
		res.kind, res.status, res.lat = kindOpen, "net", time.Since(sent)
		return res
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.lat = time.Since(sent)
	res.status = strconv.Itoa(resp.StatusCode)
	if err != nil {
		res.kind, res.status = kindOpen, "net"
		return res
	}
	return classify(res, resp.StatusCode, body)
}

func classify(res earnResult, status int, body []byte) earnResult {
	switch {
	case status == http.StatusCreated:
		res.kind = kindOK
		res.txID, res.points = earnAnswer(body)
	case status == http.StatusTooManyRequests:
		res.kind = kindRefused
	case status == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"code":"overloaded"`)):
		res.kind, res.status = kindRefused, "503 overloaded"
	case status == http.StatusServiceUnavailable, status == http.StatusConflict && bytes.Contains(body, []byte("idempotency_key_in_flight")):
		res.kind = kindOpen
	default:
		res.kind = kindRejected
	}
	return res
}

// earnAnswer reads the transaction's id and points from a 201 answer: the
// first "id" and "points" of the object, which pointd writes before the
// postings and balances. Not json.Unmarshal: decoding every answer in full
// was a seventh of the generator's CPU at three times capacity, taken from
// the server beside it. A wrong read cannot pass unnoticed: check compares
// the points acknowledged with the ledger's.
func earnAnswer(body []byte) (id string, points int64) {
	if _, v, ok := bytes.Cut(body, []byte(`"id":"`)); ok {
		if end := bytes.IndexByte(v, '"'); end >= 0 {
			id = string(v[:end])
		}
	}
	if _, v, ok := bytes.Cut(body, []byte(`"points":`)); ok {
		end := 0
		for end < len(v) && (v[end] == '-' || v[end] >= '0' && v[end] <= '9') {
			end++
		}
		points, _ = strconv.ParseInt(string(v[:end]), 10, 64)
	}
	return id, points
}

// check decides every open earn, then compares every member's history with
// what was acknowledged.
func (r *olRun) check() error {
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, n := range r.open {
		p := r.purchases[n]
		for attempt := 0; ; attempt++ {
			req, _ := http.NewRequest(http.MethodPost, r.url, bytes.NewReader(p.body))
			req.Header.Set("Authorization", r.auth)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", p.idem)
			resp, err := hc.Do(req)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				res := classify(earnResult{purch: n, receipt: p.idem}, resp.StatusCode, body)
				if res.kind == kindOK {
					r.acked[p.idem] = res
					break
				}
				if res.kind == kindRejected {
					return fmt.Errorf("asking again for %s: HTTP %d %s", p.idem, resp.StatusCode, body)
				}
			}
			if attempt > 200 {
				return fmt.Errorf("%s still undecided after %d attempts", p.idem, attempt)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	seen := map[string]int{}
	var points int64
	for _, member := range r.fx.members {
		cursor := ""
		for {
			q := url.Values{"limit": {"200"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Items []struct {
					Receipt string `json:"receipt"`
					Type    string `json:"type"`
					Points  int64  `json:"points"`
				} `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			if err := getJSON(hc, r.cfg.target+"/v1/members/"+member+"/transactions?"+q.Encode(), r.cfg.adminKey, &page); err != nil {
				return err
			}
			for _, it := range page.Items {
				if it.Type == "earn" && strings.HasPrefix(it.Receipt, "O"+r.runID+"-") {
					seen[it.Receipt]++
					points += it.Points
				}
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
	}
	var missing, doubled, unacked int
	var ackedPoints int64
	for receipt, res := range r.acked {
		ackedPoints += res.points
		switch seen[receipt] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	for receipt := range seen {
		if _, ok := r.acked[receipt]; !ok {
			unacked++
		}
	}
	fmt.Printf("%d earns acknowledged, %d in the ledger: %d missing, %d more than once, %d written but never acknowledged; points %d acknowledged, %d in the ledger\n",
		len(r.acked), len(seen), missing, doubled, unacked, ackedPoints, points)
	if missing+doubled+unacked > 0 || ackedPoints != points {
		return fmt.Errorf("the ledger does not hold exactly the acknowledged earns")
	}
	fmt.Println("every acknowledged earn is in the ledger exactly once, and nothing refused was written")
	return nil
}

func getJSON(hc *http.Client, u, key string, out any) error {
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return json.Unmarshal(body, out)
			}
			if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
				return fmt.Errorf("GET %s: HTTP %d %s", u, resp.StatusCode, body)
			}
		}
		if attempt > 50 {
			return fmt.Errorf("GET %s: no answer after %d attempts: %v", u, attempt, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// prober watches the server while the overload runs: /healthz every 20 ms,
// the database connections from /metrics every 250 ms.
type prober struct {
	target     string
	HealthMax  time.Duration `json:"health_max"`
	HealthN    int           `json:"health_probes"`
	HealthFail int           `json:"health_failed"`
	DBInUse    float64       `json:"db_in_use_max"`
	DBMax      float64       `json:"db_max"`
	// the ledger_write admission limit seen, lowest and highest
	LimitLo float64 `json:"limit_lo"`
	LimitHi float64 `json:"limit_hi"`
}

// startProber runs this program again as the prober (--endpoint probe) for
// d; its JSON report is in the buffer once done is closed.
func startProber(target string, d time.Duration) (*bytes.Buffer, <-chan struct{}, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	var out bytes.Buffer
	cmd := exec.Command(self, "--endpoint", "probe", "--target", target, "--duration", d.String(), "--admin-key", "-")
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start the prober: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return &out, done, nil
}

// runProbe is --endpoint probe: probe for cfg.duration, then print the
// report as JSON.
func runProbe(cfg config) error {
	p := &prober{target: cfg.target}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	<-p.run(ctx)
	return json.NewEncoder(os.Stdout).Encode(p)
}

func (p *prober) run(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		hc := &http.Client{Timeout: 2 * time.Second}
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			start := time.Now()
			resp, err := hc.Get(p.target + "/healthz")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took := time.Since(start)
			p.HealthN++
			p.HealthMax = max(p.HealthMax, took)
			if err != nil || resp.StatusCode != http.StatusOK {
				p.HealthFail++
			}
		}
	})
	wg.Go(func() {
		hc := &http.Client{Timeout: 5 * time.Second}
		gauges := []struct {
			name string
			max  *float64
		}{{"pointd_db_connections_in_use ", &p.DBInUse}, {"pointd_db_connections_max ", &p.DBMax}}
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			resp, err := hc.Get(p.target + "/metrics")
			if err != nil {
				continue
			}
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, `pointd_admission_limit{class="ledger_write"} `); ok {
					if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
						if p.LimitHi == 0 || f < p.LimitLo {
							p.LimitLo = f
						}
						p.LimitHi = max(p.LimitHi, f)
					}
				}
				for _, g := range gauges {
					if v, ok := strings.CutPrefix(line, g.name); ok {
						if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f > *g.max {
							*g.max = f
						}
					}
				}
			}
			resp.Body.Close()
		}
	})
	go func() { wg.Wait(); close(done) }()
	return done
}

// snapshot is one scrape of the server's /metrics: every sample by its
// name and labels as printed ("pointd_refusals_total{reason=\"overloaded\"}").
type snapshot map[string]float64

func scrape(target string) snapshot {
	out := snapshot{}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(target + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// delta is how much a counter grew between two scrapes.
func delta(before, after snapshot, name string) float64 { return after[name] - before[name] }

// buckets are a histogram's cumulative counts by upper bound, for the
// samples of name whose labels include every one of with.
func buckets(s snapshot, name string, with ...string) map[float64]float64 {
	out := map[float64]float64{}
	prefix := name + "_bucket{"
	for k, v := range s {
		labels, ok := strings.CutPrefix(k, prefix)
		if !ok {
			continue
		}
		match := true
		for _, w := range with {
			match = match && strings.Contains(labels, w)
		}
		if !match {
			continue
		}
		_, le, _ := strings.Cut(labels, `le="`)
		le, _, _ = strings.Cut(le, `"`)
		bound := 1e9
		if le != "+Inf" {
			bound, _ = strconv.ParseFloat(le, 64)
		}
		out[bound] += v
	}
	return out
}

// histDelta is the p99 and the largest bucket bound of what a histogram
// observed between two scrapes (its samples whose labels include with).
func histDelta(before, after snapshot, name string, with ...string) (p99, worst string) {
	b, a := buckets(before, name, with...), buckets(after, name, with...)
	les := make([]float64, 0, len(a))
	for le := range a {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 {
		return "-", "-"
	}
	total := a[les[len(les)-1]] - b[les[len(les)-1]]
	if total <= 0 {
		return "-", "-"
	}
	bound := func(le float64) string {
		if le >= 1e9 {
			return "+Inf"
		}
		return fmtDur(time.Duration(le * float64(time.Second)))
	}
	p99, worst = "-", "-"
	for _, le := range les {
		n := a[le] - b[le]
		if p99 == "-" && n >= 0.99*total {
			p99 = bound(le)
		}
		if worst == "-" && n >= total {
			worst = bound(le)
		}
	}
	return p99, worst
}
