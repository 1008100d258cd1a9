package alert

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeClock moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2015, 10, 22, 16, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
}

func (c *fakeClock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// eventually polls cond in real time: deliveries run on their own goroutines.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// receiver is a webhook endpoint that records what it is sent.
type receiver struct {
	mu       sync.Mutex
	status   int           // answered; 200 when 0
	hang     chan struct{} // when set, requests wait until it is closed
	entered  chan struct{} // told when a request arrives (non-blocking)
	attempts int
	got      []jsonMessage
	raw      []string
	srv      *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{entered: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.attempts++
	hang, status := r.hang, r.status
	r.mu.Unlock()
	select {
	case r.entered <- struct{}{}:
	default:
	}
	if hang != nil {
		<-hang
	}
	if status != 0 && status != http.StatusOK {
		w.WriteHeader(status)
		return
	}
	var m jsonMessage
	_ = json.Unmarshal(b, &m)
	r.mu.Lock()
	r.got = append(r.got, m)
	r.raw = append(r.raw, string(b))
	r.mu.Unlock()
}

func (r *receiver) messages() []jsonMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]jsonMessage(nil), r.got...)
}

func (r *receiver) count() int { return len(r.messages()) }

// signals are gauges the tests set and rules read.
type signals struct {
	reg *prometheus.Registry
	g   *prometheus.GaugeVec
}

func newSignals() *signals {
	s := &signals{reg: prometheus.NewRegistry(),
		g: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_signal", Help: "a test signal"}, []string{"name"})}
	s.reg.MustRegister(s.g)
	return s
}

func (s *signals) set(name string, v float64) { s.g.WithLabelValues(name).Set(v) }

// above fires when signal name is over 10.
func above(name string, forD, keep time.Duration) Rule {
	return Rule{Name: name, Metric: "test_signal", Labels: map[string]string{"name": name},
		Op: ">", Threshold: 10, For: forD, KeepFiringFor: &keep, Severity: SeverityCritical,
		Summary: name + " is {{value}}"}
}

type testEngine struct {
	*Engine
	clk *fakeClock
	sig *signals
	rcv *receiver
}

// newTestEngine starts the engine's deliveries (not its evaluation loop:
// the test calls Evaluate after moving the clock).
func newTestEngine(t *testing.T, hook Webhook, rules ...Rule) *testEngine {
	t.Helper()
	te := &testEngine{clk: newFakeClock(), sig: newSignals(), rcv: newReceiver(t)}
	if hook.Name == "" {
		hook.Name = "test"
	}
	if hook.URL == "" {
		hook.URL = te.rcv.srv.URL
	}
	e, err := New(Config{
		Gatherer: te.sig.reg, Clock: te.clk, Instance: "test",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		File:     File{Interval: time.Second, RepeatInterval: 4 * time.Hour, Rules: rules, Webhooks: []Webhook{hook}},
		RetryMin: time.Second, RetryMax: 8 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	te.Engine = e
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, s := range e.senders {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return te
}

// tick moves the clock by d and evaluates.
func (te *testEngine) tick(d time.Duration) {
	te.clk.Advance(d)
	te.Evaluate()
}

func (te *testEngine) sent(status string) float64 {
	return counterValue(te.notified.WithLabelValues("test", status))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func names(m jsonMessage) string {
	var ns []string
	for _, a := range m.Alerts {
		ns = append(ns, a.Name+":"+a.Status)
	}
	sort.Strings(ns)
	return strings.Join(ns, ",")
}

// A signal flapping around its threshold for ten minutes, with gaps
// shorter than keep_firing_for, gives one firing and one resolved message.
func TestFlappingSignalOneFiringOneResolved(t *testing.T) {
	te := newTestEngine(t, Webhook{}, above("Pool", 30*time.Second, time.Minute))
	rng := rand.New(rand.NewPCG(1, 2))
	te.sig.set("Pool", 0)
	te.tick(time.Second)
	flips := 0
	for elapsed := 0; elapsed < 600; {
		// up for 1–20 s, then down for 1–50 s: the 20:00 pool flapping
		up, down := 1+rng.IntN(20), 1+rng.IntN(50)
		te.sig.set("Pool", 12)
		for range up {
			te.tick(time.Second)
		}
		te.sig.set("Pool", 3)
		for range down {
			te.tick(time.Second)
		}
		elapsed += up + down
		flips++
	}
	for range 120 { // quiet for two minutes
		te.tick(time.Second)
	}
	eventually(t, "two messages", func() bool { return te.rcv.count() >= 2 })
	time.Sleep(50 * time.Millisecond) // nothing more may follow
	msgs := te.rcv.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d flips gave %d messages, want 2: %+v", flips, len(msgs), msgs)
	}
	if msgs[0].Status != "firing" || names(msgs[0]) != "Pool:firing" {
		t.Errorf("first message %+v, want Pool firing", msgs[0])
	}
	if msgs[1].Status != "resolved" || names(msgs[1]) != "Pool:resolved" || msgs[1].Alerts[0].EndedAt == nil {
		t.Errorf("second message %+v, want Pool resolved with ended_at", msgs[1])
	}
	if flips < 10 {
		t.Fatalf("only %d flips: the test does not flap", flips)
	}
	if len(te.Alerts()) != 0 {
		t.Errorf("alerts still active: %+v", te.Alerts())
	}
}

// Without damping the same kind of signal would notify on every swing: the
// damping, not luck, makes the test above pass.
func TestWithoutDampingEverySwingNotifies(t *testing.T) {
	te := newTestEngine(t, Webhook{MaxPerMinute: 1000}, above("Pool", 0, 0))
	for i := range 5 {
		te.sig.set("Pool", 12)
		te.tick(time.Second)
		eventually(t, "a firing message", func() bool { return te.rcv.count() == 2*i+1 })
		te.sig.set("Pool", 3)
		te.tick(time.Second)
		eventually(t, "a resolved message", func() bool { return te.rcv.count() == 2*i+2 })
	}
}

// Alerts changing state in the same evaluation go in one message.
func TestGrouping(t *testing.T) {
	te := newTestEngine(t, Webhook{}, above("A", 0, 0), above("B", 0, 0), above("C", 0, 0))
	for _, n := range []string{"A", "B", "C"} {
		te.sig.set(n, 50)
	}
	te.tick(time.Second)
	eventually(t, "first message", func() bool { return te.rcv.count() == 1 })
	te.sig.set("A", 0)
	te.sig.set("B", 0)
	te.tick(time.Second)
	eventually(t, "second message", func() bool { return te.rcv.count() == 2 })
	msgs := te.rcv.messages()
	if got := names(msgs[0]); got != "A:firing,B:firing,C:firing" || msgs[0].Status != "firing" {
		t.Errorf("first message %s (%s)", got, msgs[0].Status)
	}
	if got := names(msgs[1]); got != "A:resolved,B:resolved" || msgs[1].Status != "resolved" {
		t.Errorf("second message %s (%s)", got, msgs[1].Status)
	}
	if a := te.Alerts(); len(a) != 1 || a[0].Name != "C" || a[0].State != StateFiring {
		t.Errorf("active alerts %+v, want C firing", a)
	}
}

// A firing alert is not sent again while it fires, except as a reminder
// every repeat interval.
func TestDeduplicationAndReminder(t *testing.T) {
	te := newTestEngine(t, Webhook{}, above("A", 0, time.Minute))
	te.sig.set("A", 50)
	for range 8*60 + 30 { // eight and a half hours, a minute at a time
		te.tick(time.Minute)
	}
	eventually(t, "three messages", func() bool { return te.rcv.count() >= 3 })
	time.Sleep(50 * time.Millisecond)
	msgs := te.rcv.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages in 8.5 h of firing, want 3 (firing, reminder at 4 h, reminder at 8 h)", len(msgs))
	}
	if msgs[0].Alerts[0].Reminder || !msgs[1].Alerts[0].Reminder || !msgs[2].Alerts[0].Reminder {
		t.Errorf("reminder flags %v %v %v", msgs[0].Alerts[0].Reminder, msgs[1].Alerts[0].Reminder, msgs[2].Alerts[0].Reminder)
	}
	if !msgs[1].Alerts[0].StartedAt.Equal(msgs[0].Alerts[0].StartedAt) {
		t.Errorf("a reminder keeps started_at: %v vs %v", msgs[1].Alerts[0].StartedAt, msgs[0].Alerts[0].StartedAt)
	}
}

// At most MaxPerMinute messages a minute; what exceeds it is merged into
// the next message.
func TestRateLimitMergesExcess(t *testing.T) {
	rules := []Rule{}
	for _, n := range []string{"A", "B", "C", "D", "E"} {
		rules = append(rules, above(n, 0, time.Minute))
	}
	te := newTestEngine(t, Webhook{MaxPerMinute: 2}, rules...)
	for i, n := range []string{"A", "B", "C", "D", "E"} {
		te.sig.set(n, 50)
		te.tick(time.Second)
		if i < 2 {
			eventually(t, "message "+n, func() bool { return te.rcv.count() == i+1 })
		}
	}
	eventually(t, "the sender to wait for the rate limit", func() bool { return te.clk.Waiters() == 1 })
	time.Sleep(30 * time.Millisecond)
	if n := te.rcv.count(); n != 2 {
		t.Fatalf("%d messages within the first minute, limit 2", n)
	}
	te.clk.Advance(time.Minute)
	eventually(t, "the merged message", func() bool { return te.rcv.count() == 3 })
	time.Sleep(30 * time.Millisecond)
	msgs := te.rcv.messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	if got := names(msgs[2]); got != "C:firing,D:firing,E:firing" {
		t.Errorf("merged message %s, want C, D and E", got)
	}
	if te.sent("sent") != 3 {
		t.Errorf("sent counter %v, want 3", te.sent("sent"))
	}
}

// A receiver answering 500, then gone, then back: evaluation never waits,
// deliveries are retried with backoff, and what happened meanwhile arrives
// merged when it is back.
func TestDownReceiverRetriedWithoutBlocking(t *testing.T) {
	te := newTestEngine(t, Webhook{}, above("A", 0, time.Minute), above("B", 0, time.Minute))
	te.rcv.mu.Lock()
	te.rcv.status = http.StatusInternalServerError
	te.rcv.mu.Unlock()
	addr := te.rcv.srv.Listener.Addr().String()

	timed := func(what string) {
		start := time.Now()
		te.Evaluate()
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("%s: Evaluate took %v", what, d)
		}
	}
	te.sig.set("A", 50)
	timed("receiver answering 500")
	eventually(t, "a failed attempt", func() bool { return te.sent("failed") == 1 && te.clk.Waiters() == 1 })

	te.rcv.srv.Close() // now the receiver is gone: connections are refused
	te.sig.set("B", 50)
	timed("receiver gone")
	te.clk.Advance(time.Second) // the first retry, after 1 s
	eventually(t, "a second failed attempt", func() bool { return te.sent("failed") == 2 && te.clk.Waiters() == 1 })
	timed("receiver gone, retrying")

	// It comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	back := &receiver{entered: make(chan struct{}, 100)}
	back.srv = httptest.NewUnstartedServer(back)
	back.srv.Listener.Close()
	back.srv.Listener = ln
	back.srv.Start()
	t.Cleanup(back.srv.Close)

	te.clk.Advance(2 * time.Second) // the second retry, after 2 s
	eventually(t, "delivery to the receiver that came back", func() bool { return back.count() == 1 })
	msgs := back.messages()
	if got := names(msgs[0]); got != "A:firing,B:firing" {
		t.Errorf("delivered %s, want A and B firing in one message", got)
	}
	if te.sent("sent") != 1 || te.sent("failed") != 2 {
		t.Errorf("counters sent=%v failed=%v, want 1 and 2", te.sent("sent"), te.sent("failed"))
	}
}

// A receiver that accepts the connection and never answers holds one
// delivery (until its timeout) but neither the evaluation nor the queue:
// the queue stays bounded, dropping the oldest.
func TestHungReceiverBoundedQueue(t *testing.T) {
	rules := []Rule{}
	all := []string{"A", "B", "C", "D", "E", "F"}
	for _, n := range all {
		rules = append(rules, above(n, 0, time.Minute))
	}
	te := newTestEngine(t, Webhook{QueueSize: 2, MaxPerMinute: 100}, rules...)
	release := make(chan struct{})
	te.rcv.mu.Lock()
	te.rcv.hang = release
	te.rcv.mu.Unlock()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	te.sig.set("A", 50)
	te.tick(time.Second)
	<-te.rcv.entered // the sender is stuck in its first delivery
	for _, n := range all[1:] {
		te.sig.set(n, 50)
		start := time.Now()
		te.tick(time.Second)
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Evaluate took %v while the receiver hangs", d)
		}
	}
	if d := counterValue(te.dropped.WithLabelValues("test")); d != 3 {
		t.Errorf("dropped %v messages, want 3 (5 queued, room for 2)", d)
	}
	te.rcv.mu.Lock()
	te.rcv.hang = nil
	te.rcv.mu.Unlock()
	close(release)
	eventually(t, "two deliveries", func() bool { return te.rcv.count() == 2 })
	msgs := te.rcv.messages()
	if names(msgs[0]) != "A:firing" || names(msgs[1]) != "E:firing,F:firing" {
		t.Errorf("delivered %s then %s; want A, then the two newest (E, F)", names(msgs[0]), names(msgs[1]))
	}
}

func TestSlackFormat(t *testing.T) {
	te := newTestEngine(t, Webhook{Format: "slack"}, above("A", 0, 0))
	te.sig.set("A", 42)
	te.tick(time.Second)
	eventually(t, "message", func() bool { return len(te.rcv.rawBodies()) == 1 })
	te.sig.set("A", 1)
	te.tick(time.Second)
	eventually(t, "message", func() bool { return len(te.rcv.rawBodies()) == 2 })
	for i, b := range te.rcv.rawBodies() {
		var m map[string]any
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatal(err)
		}
		text, _ := m["text"].(string)
		if len(m) != 1 || text == "" {
			t.Fatalf("slack message %s: want only a text", b)
		}
		want := []string{"FIRING [critical] *A*: A is 42", "RESOLVED [critical] *A*: A is 1"}[i]
		if !strings.Contains(text, want) {
			t.Errorf("slack text %q lacks %q", text, want)
		}
	}
}

func (r *receiver) rawBodies() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.raw...)
}

// Severities route alerts to the webhooks that want them.
func TestWebhookSeverities(t *testing.T) {
	warn := above("W", 0, 0)
	warn.Severity = SeverityWarning
	te := newTestEngine(t, Webhook{Severities: []string{SeverityCritical}}, above("C", 0, 0), warn)
	te.sig.set("W", 50)
	te.tick(time.Second)
	te.sig.set("C", 50)
	te.tick(time.Second)
	eventually(t, "message", func() bool { return te.rcv.count() == 1 })
	time.Sleep(30 * time.Millisecond)
	if msgs := te.rcv.messages(); len(msgs) != 1 || names(msgs[0]) != "C:firing" {
		t.Errorf("messages %+v, want only C", msgs)
	}
}

// pending → firing only after `for`; the dashboard sees both states.
func TestPendingThenFiring(t *testing.T) {
	te := newTestEngine(t, Webhook{}, above("A", 30*time.Second, time.Minute))
	te.sig.set("A", 50)
	te.tick(time.Second)
	if a := te.Alerts(); len(a) != 1 || a[0].State != StatePending {
		t.Fatalf("alerts %+v, want A pending", a)
	}
	for range 29 {
		te.tick(time.Second)
	}
	if a := te.Alerts(); a[0].State != StatePending {
		t.Fatalf("fired after 29 s: %+v", a)
	}
	te.tick(time.Second)
	if a := te.Alerts(); a[0].State != StateFiring || a[0].FiredAt.IsZero() {
		t.Fatalf("not firing after 30 s: %+v", a)
	}
	b, _ := json.Marshal(te.Alerts())
	if !strings.Contains(string(b), `"state":"firing"`) || !strings.Contains(string(b), `"value":50`) {
		t.Errorf("alerts JSON %s", b)
	}
}
