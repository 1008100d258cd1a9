package main

// Crash and drain tests: the real binary, killed with SIGKILL in the middle
// of a load of earns and restarted on the same database, or stopped with
// SIGTERM while requests are in flight. Every purchase is retried with the
// same Idempotency-Key and body until it gets a 201 (new or replayed); then
// every balance and every member's transaction list must show each purchase
// exactly once, and `pointd verify` must find the ledger sound.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/postgres/pgtest"
)

const (
	crashClients  = 16
	crashMembers  = 20
	crashRateBP   = 1234 // 12.34 %: most amounts round down
	clientTimeout = 2 * time.Second
)

func TestCrashSQLite(t *testing.T) {
	bin := buildPointd(t)
	crashTest(t, bin, []string{"--data", t.TempDir()})
}

// TestCrashPostgreSQL needs the local PostgreSQL: pgtest.DSN fails the test
// (it does not skip) when the server cannot be reached.
func TestCrashPostgreSQL(t *testing.T) {
	bin := buildPointd(t)
	crashTest(t, bin, []string{"--db", pgtest.DSN(t), "--data-key", testDataKey})
}

func crashTest(t *testing.T, bin string, dbArgs []string) {
	srv := newServerProc(t, bin, dbArgs)
	admin := srv.adminKey()
	srv.start()
	a := newAPIClient(srv.addr, crashClients+4)
	fx := setUp(t, a, admin, crashMembers)

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	l := &load{a: a, fx: fx, per: make([][]*purchase, crashClients)}
	wait := l.start(ctx, crashClients)

	// Let the load run, then kill the server in the middle of it.
	deadline := time.Now().Add(5 * time.Second)
	time.Sleep(1200 * time.Millisecond)
	for l.ok.Load() < 2*crashClients && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	before := l.ok.Load()
	if before == 0 {
		t.Fatalf("no earn succeeded in %s of load: the server is not serving (see logs)", time.Since(deadline.Add(-5*time.Second)))
	}
	srv.kill()
	t.Logf("killed the server (SIGKILL) after %d acknowledged earns", before)
	time.Sleep(200 * time.Millisecond) // clients see a dead server and keep retrying
	srv.start()
	// New purchases mix with the retries for a while after the restart.
	time.Sleep(300 * time.Millisecond)
	l.stopNew.Store(true)
	wait()

	st := l.check(t, a)
	t.Logf("purchases %d (acknowledged before the kill %d); without a definitive answer at least once %d, "+
		"of which answered as replays after the restart %d; total attempts %d",
		st.purchases, before, st.ambiguous, st.replayedAfterAmbiguity, st.attempts)
	if st.ambiguous == 0 {
		t.Errorf("no request was cut off by the kill: the test did not test a crash")
	}
	srv.stop()
	srv.verify()
}

// TestDrainOnSIGTERM: requests the server has begun to read when SIGTERM
// arrives are answered (201, committed), the process exits 0 and the ledger
// is sound. The in-flight requests are made deterministic by sending their
// headers and half the body before the signal and the rest after the
// listener has closed.
func TestDrainOnSIGTERM(t *testing.T) {
	bin := buildPointd(t)
	srv := newServerProc(t, bin, []string{"--data", t.TempDir()})
	admin := srv.adminKey()
	srv.start()
	const bg = 8
	a := newAPIClient(srv.addr, bg+4)
	fx := setUp(t, a, admin, crashMembers)

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	l := &load{a: a, fx: fx, per: make([][]*purchase, bg+1)}
	wait := l.start(ctx, bg)

	// Half-sent requests, on connections of their own.
	const nSlow = 6
	var slow []*slowRequest
	for i := range nSlow {
		p := l.newPurchase(bg, i, rand.New(rand.NewPCG(99, uint64(i))))
		l.per[bg] = append(l.per[bg], p)
		slow = append(slow, startSlowRequest(t, srv.addr, fx.pos, p))
	}
	time.Sleep(700 * time.Millisecond) // background load runs; the server reads the slow headers
	if l.ok.Load() == 0 {
		t.Fatal("no background earn succeeded: the server is not serving")
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	sigAt := time.Now()
	// Shutdown has begun once the listener refuses connections.
	for {
		c, err := net.DialTimeout("tcp", srv.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Since(sigAt) > 10*time.Second {
			t.Fatal("the server still accepts connections 10s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-srv.done:
		t.Fatalf("the server exited (%v) before answering the requests in flight", srv.waitErr)
	default:
	}
	for i, s := range slow {
		status, body, err := s.finish()
		if err != nil {
			t.Fatalf("in-flight request %d got no answer after SIGTERM: %v", i, err)
		}
		if status != http.StatusCreated {
			t.Fatalf("in-flight request %d: HTTP %d after SIGTERM, want 201: %s", i, status, body)
		}
		s.p.recordCreated(body, false)
	}
	l.stopNew.Store(true)
	select {
	case <-srv.done:
	case <-time.After(40 * time.Second):
		t.Fatal("the server did not exit within 40s of SIGTERM")
	}
	if srv.waitErr != nil {
		t.Fatalf("after SIGTERM the server exited with %v, want status 0", srv.waitErr)
	}
	t.Logf("drained and exited 0 in %s; %d background earns acknowledged", time.Since(sigAt).Round(time.Millisecond), l.ok.Load())

	// Background requests cut off by the stop are asked again after a
	// restart; then everything must be there exactly once.
	srv.start()
	wait()
	st := l.check(t, a)
	t.Logf("purchases %d; without a definitive answer at least once %d (replays after restart %d)",
		st.purchases, st.ambiguous, st.replayedAfterAmbiguity)
	srv.stop()
	srv.verify()
}

// ---- the server process ----

type serverProc struct {
	t      *testing.T
	bin    string
	dbArgs []string
	addr   string
	logDir string
	starts int

	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// buildPointd builds the binary under test once per test.
func buildPointd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pointd")
	// go test puts its own GOROOT/bin first on the PATH of the tests.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build pointd: %v", err)
	}
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func newServerProc(t *testing.T, bin string, dbArgs []string) *serverProc {
	s := &serverProc{t: t, bin: bin, dbArgs: dbArgs, addr: freeAddr(t), logDir: t.TempDir()}
	// Registered after the database (pgtest drops its schema in a cleanup
	// that must run after the server is gone).
	t.Cleanup(func() {
		if s.cmd != nil {
			select {
			case <-s.done:
			default:
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		if t.Failed() {
			s.dumpLogs()
		}
	})
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminKey runs `pointd migrate` (keys create makes no ledger) and `pointd
// keys create --role admin`; the key is the last line.
func (s *serverProc) adminKey() string {
	s.t.Helper()
	if out, err := exec.Command(s.bin, append([]string{"migrate"}, s.dbArgs...)...).CombinedOutput(); err != nil {
		s.t.Fatalf("pointd migrate: %v\n%s", err, out)
	}
	args := append([]string{"keys", "create", "--role", "admin"}, s.dbArgs...)
	out, err := exec.Command(s.bin, args...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("pointd keys create: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	key := strings.TrimSpace(lines[len(lines)-1])
	if !strings.HasPrefix(key, "pd_") {
		s.t.Fatalf("pointd keys create: no key on the last line:\n%s", out)
	}
	return key
}

func (s *serverProc) start() {
	s.t.Helper()
	s.starts++
	logPath := filepath.Join(s.logDir, fmt.Sprintf("serve-%d.log", s.starts))
	logf, err := os.Create(logPath)
	if err != nil {
		s.t.Fatal(err)
	}
	args := append([]string{"serve", "--addr", s.addr}, s.dbArgs...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.t.Fatalf("start pointd serve: %v", err)
	}
	s.cmd, s.done, s.waitErr = cmd, make(chan struct{}), nil
	done := s.done
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.waitErr = err
		close(done)
	}()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get("http://" + s.addr + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			s.t.Fatalf("pointd serve exited while starting: %v", s.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pointd serve not ready after 20s (last error %v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *serverProc) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Fatalf("SIGKILL: %v", err)
	}
	<-s.done
}

// stop ends the server with SIGTERM and wants exit status 0.
func (s *serverProc) stop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		s.t.Fatal("pointd serve did not stop within 40s of SIGTERM")
	}
	if s.waitErr != nil {
		s.t.Errorf("pointd serve exited with %v after SIGTERM, want status 0", s.waitErr)
	}
}

// verify runs `pointd verify` and wants exit status 0.
func (s *serverProc) verify() {
	s.t.Helper()
	args := append([]string{"verify"}, s.dbArgs...)
	out, err := exec.Command(s.bin, args...).CombinedOutput()
	if err != nil {
		s.t.Errorf("pointd verify: %v (want exit status 0)\n%s", err, out)
		return
	}
	s.t.Logf("pointd verify:\n%s", strings.TrimSpace(string(out)))
}

func (s *serverProc) dumpLogs() {
	for i := 1; i <= s.starts; i++ {
		b, err := os.ReadFile(filepath.Join(s.logDir, fmt.Sprintf("serve-%d.log", i)))
		if err != nil {
			continue
		}
		if len(b) > 8000 {
			b = append([]byte("…"), b[len(b)-8000:]...)
		}
		s.t.Logf("log of server start %d:\n%s", i, b)
	}
}

// ---- the API client ----

type apiClient struct {
	base string
	hc   *http.Client
}

func newAPIClient(addr string, conns int) *apiClient {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}
	return &apiClient{base: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: clientTimeout}}
}

// do sends one request; err is set when no complete answer came back.
func (a *apiClient) do(ctx context.Context, method, path, key, idem string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

// retryable says whether an answer leaves the outcome open: asking again
// with the same key and body will tell.
func retryable(status int, body []byte, err error) bool {
	if err != nil {
		return true
	}
	switch status {
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return true
	case http.StatusConflict:
		return bytes.Contains(body, []byte(`"idempotency_key_in_flight"`))
	}
	return false
}

// mustCreate POSTs until a definitive answer (setup runs before any kill, so
// retries only absorb a slow start) and wants 201.
func (a *apiClient) mustCreate(t *testing.T, path, key, idem string, in, out any) {
	t.Helper()
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _, resp, err := a.do(context.Background(), http.MethodPost, path, key, idem, body)
		if retryable(st, resp, err) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil || st != http.StatusCreated {
			t.Fatalf("POST %s: HTTP %d %v: %s", path, st, err, resp)
		}
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("POST %s: %v: %s", path, err, resp)
		}
		return
	}
}

func (a *apiClient) mustGet(t *testing.T, path, key string, out any) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		st, _, resp, err := a.do(context.Background(), http.MethodGet, path, key, "", nil)
		if retryable(st, resp, err) && attempt < 20 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil || st != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d %v: %s", path, st, err, resp)
		}
		if err := json.Unmarshal(resp, out); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, resp)
		}
		return
	}
}

type fixture struct {
	admin, pos string
	merchantID string
	storeID    string
	rateBP     int64
	members    []string
}

// setUp makes a merchant, a store, members and a POS key through the API.
func setUp(t *testing.T, a *apiClient, admin string, members int) fixture {
	t.Helper()
	fx := fixture{admin: admin, rateBP: crashRateBP}
	var m struct {
		ID string `json:"id"`
	}
	a.mustCreate(t, "/v1/merchants", admin, "setup-merchant",
		map[string]any{"name": "Crash Coffee", "earn_rate_bp": crashRateBP, "point_validity_days": 365}, &m)
	fx.merchantID = m.ID
	var s struct {
		ID string `json:"id"`
	}
	a.mustCreate(t, "/v1/merchants/"+fx.merchantID+"/stores", admin, "setup-store", map[string]any{"name": "Crash Street 1"}, &s)
	fx.storeID = s.ID
	var k struct {
		Key string `json:"key"`
	}
	a.mustCreate(t, "/v1/keys", admin, "setup-pos-key",
		map[string]any{"role": "pos", "merchant_id": fx.merchantID, "store_id": ""}, &k)
	fx.pos = k.Key
	for i := range members {
		var mb struct {
			ID string `json:"id"`
		}
		a.mustCreate(t, "/v1/members", fx.pos, fmt.Sprintf("setup-member-%d", i),
			map[string]any{"phone": fmt.Sprintf("+1555%07d", i), "name": fmt.Sprintf("Member %d", i)}, &mb)
		fx.members = append(fx.members, mb.ID)
	}
	return fx
}

// ---- the load ----

// purchase is one receipt earned on with one idempotency key. Only the
// client goroutine that owns it touches it until the load is over.
type purchase struct {
	member  int
	receipt string
	idem    string
	amount  int64
	body    []byte

	attempts  int
	ambiguous int // attempts that ended without a definitive answer
	done      bool
	replayed  bool
	txnID     string
	points    int64
	respRcpt  string
	respMem   string
	failure   string
}

func (p *purchase) recordCreated(body []byte, replayed bool) {
	var r struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		MemberID string `json:"member_id"`
		Receipt  string `json:"receipt"`
		Points   int64  `json:"points"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.ID == "" {
		p.failure = fmt.Sprintf("201 with an unreadable body (%v): %s", err, body)
		return
	}
	p.done, p.replayed, p.txnID, p.points, p.respRcpt, p.respMem = true, replayed, r.ID, r.Points, r.Receipt, r.MemberID
}

type load struct {
	a       *apiClient
	fx      fixture
	per     [][]*purchase // by client
	stopNew atomic.Bool   // no new purchases; finish the current one
	ok      atomic.Int64
}

func (l *load) newPurchase(client, seq int, rng *rand.Rand) *purchase {
	p := &purchase{
		member:  rng.IntN(len(l.fx.members)),
		receipt: fmt.Sprintf("R%02d-%06d", client, seq),
		idem:    fmt.Sprintf("earn-%02d-%06d", client, seq),
		amount:  1 + rng.Int64N(99_999),
	}
	p.body, _ = json.Marshal(map[string]any{"member_id": l.fx.members[p.member], "store_id": l.fx.storeID,
		"receipt": p.receipt, "purchase_amount": p.amount})
	return p
}

// start runs clients closed-loop until stopNew; the returned wait blocks
// until each has settled its last purchase (or ctx ends).
func (l *load) start(ctx context.Context, clients int) (wait func()) {
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			for seq := 0; !l.stopNew.Load() && ctx.Err() == nil; seq++ {
				p := l.newPurchase(c, seq, rng)
				l.per[c] = append(l.per[c], p)
				l.earn(ctx, p)
			}
		}()
	}
	return wg.Wait
}

// earn asks until a definitive answer, always with the same key and body.
func (l *load) earn(ctx context.Context, p *purchase) {
	backoff := 10 * time.Millisecond
	for ctx.Err() == nil {
		p.attempts++
		st, hdr, body, err := l.a.do(ctx, http.MethodPost, "/v1/earns", l.fx.pos, p.idem, p.body)
		if err == nil && st == http.StatusCreated {
			p.recordCreated(body, hdr.Get("Idempotent-Replayed") == "true")
			l.ok.Add(1)
			return
		}
		if !retryable(st, body, err) {
			p.failure = fmt.Sprintf("HTTP %d: %s", st, bytes.TrimSpace(body))
			return
		}
		p.ambiguous++
		wait := backoff
		if s, err := strconv.Atoi(hdr.Get("Retry-After")); err == nil && s > 0 { // 429, 503: as a good POS does
			wait = max(wait, time.Duration(s)*time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 300*time.Millisecond)
	}
}

type loadStats struct {
	purchases, ambiguous, replayedAfterAmbiguity, attempts int
}

// check wants every purchase answered 201 and present exactly once, with the
// points of the merchant's rate (rounded down), in the member's transaction
// list and balance.
func (l *load) check(t *testing.T, a *apiClient) loadStats {
	t.Helper()
	var st loadStats
	type want struct {
		balance  int64
		receipts map[string]*purchase
	}
	wants := make([]want, len(l.fx.members))
	for i := range wants {
		wants[i].receipts = map[string]*purchase{}
	}
	bad := 0
	for _, ps := range l.per {
		for _, p := range ps {
			st.purchases++
			st.attempts += p.attempts
			if p.ambiguous > 0 {
				st.ambiguous++
				if p.replayed {
					st.replayedAfterAmbiguity++
				}
			}
			points := p.amount * l.fx.rateBP / 10_000
			switch {
			case p.failure != "":
				bad++
				if bad <= 10 {
					t.Errorf("purchase %s (key %s): %s", p.receipt, p.idem, p.failure)
				}
			case !p.done:
				bad++
				if bad <= 10 {
					t.Errorf("purchase %s (key %s): no 201 after %d attempts", p.receipt, p.idem, p.attempts)
				}
			case p.points != points || p.respRcpt != p.receipt || p.respMem != l.fx.members[p.member]:
				t.Errorf("purchase %s: answered receipt %q member %s points %d, want %q %s %d",
					p.receipt, p.respRcpt, p.respMem, p.points, p.receipt, l.fx.members[p.member], points)
			}
			if p.replayed && p.ambiguous == 0 {
				t.Errorf("purchase %s: the first answer was a replay", p.receipt)
			}
			w := &wants[p.member]
			w.balance += points
			w.receipts[p.receipt] = p
		}
	}
	if bad > 10 {
		t.Errorf("… %d purchases without a 201 in all", bad)
	}

	for i, id := range l.fx.members {
		w := wants[i]
		var b struct {
			Balance int64 `json:"balance"`
		}
		a.mustGet(t, "/v1/members/"+id+"/balance", l.fx.pos, &b)
		if b.Balance != w.balance {
			t.Errorf("member %d: balance %d, want %d (sum of its %d purchases)", i, b.Balance, w.balance, len(w.receipts))
		}
		seen := map[string]int{}
		cursor := ""
		for {
			var pg struct {
				Items []struct {
					ID      string `json:"id"`
					Type    string `json:"type"`
					Receipt string `json:"receipt"`
					Points  int64  `json:"points"`
				} `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			path := "/v1/members/" + id + "/transactions?limit=200"
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			a.mustGet(t, path, l.fx.pos, &pg)
			for _, x := range pg.Items {
				seen[x.Receipt]++
				p, ok := w.receipts[x.Receipt]
				switch {
				case !ok:
					t.Errorf("member %d: transaction %s (%s, receipt %q) that no client asked for", i, x.ID, x.Type, x.Receipt)
				case seen[x.Receipt] > 1:
					t.Errorf("member %d: receipt %s listed %d times", i, x.Receipt, seen[x.Receipt])
				case x.ID != p.txnID && p.done:
					t.Errorf("member %d: receipt %s is transaction %s, but the client was answered %s", i, x.Receipt, x.ID, p.txnID)
				case x.Points != p.amount*l.fx.rateBP/10_000:
					t.Errorf("member %d: receipt %s earned %d points, want %d", i, x.Receipt, x.Points, p.amount*l.fx.rateBP/10_000)
				}
			}
			if pg.NextCursor == "" {
				break
			}
			cursor = pg.NextCursor
		}
		for r := range w.receipts {
			if seen[r] == 0 {
				t.Errorf("member %d: receipt %s is missing from its transactions", i, r)
			}
		}
	}
	return st
}

// ---- a request cut in two ----

type slowRequest struct {
	conn net.Conn
	p    *purchase
	rest []byte
}

// startSlowRequest sends the headers and half the body of an earn.
func startSlowRequest(t *testing.T, addr, key string, p *purchase) *slowRequest {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	half := len(p.body) / 2
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST /v1/earns HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"+
		"Idempotency-Key: %s\r\nContent-Length: %d\r\n\r\n", addr, key, p.idem, len(p.body))
	b.Write(p.body[:half])
	if _, err := conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	p.attempts = 1
	return &slowRequest{conn: conn, p: p, rest: p.body[half:]}
}

func (s *slowRequest) finish() (int, []byte, error) {
	_ = s.conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := s.conn.Write(s.rest); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	if resp.Header.Get("Idempotent-Replayed") != "" {
		return resp.StatusCode, body, errors.New("answered as a replay: " + strconv.Quote(string(body)))
	}
	return resp.StatusCode, body, nil
}
