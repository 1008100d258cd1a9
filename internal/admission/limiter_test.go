package admission

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// run completes n requests of latency rtt each, c at a time (the clock moves
// rtt per round), and returns the limit afterwards.
func run(t *testing.T, l *Limiter, clk *fakeClock, n, conc int, rtt time.Duration) int {
	t.Helper()
	for done := 0; done < n; {
		var toks []*Token
		for range conc {
			tok, err := l.Acquire(context.Background())
			if err != nil {
				break
			}
			toks = append(toks, tok)
		}
		if len(toks) == 0 {
			t.Fatalf("no slot at all: %+v", l.Stats())
		}
		clk.Add(rtt)
		for _, tok := range toks {
			tok.Done(false)
		}
		done += len(toks)
	}
	return l.Stats().Limit
}

func TestLimiterAdmitsUpToTheLimitQueuesALittleAndRefusesTheRest(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{Initial: 3, Min: 1, Max: 10, Queue: 1, MaxWait: time.Hour, Now: clk.Now})
	var toks []*Token
	for range 3 {
		tok, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatalf("within the limit: %v", err)
		}
		toks = append(toks, tok)
	}
	// The fourth waits in the queue; the fifth finds the queue full.
	got := make(chan error, 1)
	go func() {
		tok, err := l.Acquire(context.Background())
		if err == nil {
			tok.Done(false)
		}
		got <- err
	}()
	for l.Stats().Waiting != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, err := l.Acquire(context.Background()); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("with the limit reached and the queue full: %v, want ErrOverloaded", err)
	}
	if s := l.Stats(); s.Refused != 1 || s.InFlight != 3 || s.LastRefusal.IsZero() {
		t.Errorf("stats %+v, want 1 refused and 3 in flight", s)
	}
	toks[0].Done(false) // hands its slot to the waiter
	if err := <-got; err != nil {
		t.Fatalf("the waiter: %v", err)
	}
	toks[0].Done(false) // a second Done gives nothing back twice
	for _, tok := range toks[1:] {
		tok.Done(false)
	}
	if s := l.Stats(); s.InFlight != 0 || s.Waiting != 0 {
		t.Errorf("after everything is done: %+v", s)
	}
}

func TestLimiterWaiterGivesUp(t *testing.T) {
	l := NewLimiter(LimiterConfig{Initial: 1, Min: 1, Max: 1, Queue: 4, MaxWait: time.Millisecond})
	tok, err := l.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("after its longest wait, as overloaded", func(t *testing.T) {
		if _, err := l.Acquire(context.Background()); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("got %v, want ErrOverloaded", err)
		}
	})
	t.Run("when its caller has gone, with the caller's error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	tok.Done(false)
	if s := l.Stats(); s.InFlight != 0 || s.Waiting != 0 || s.Refused != 1 {
		t.Errorf("stats %+v, want nothing held and one refusal", s)
	}
}

// TestLimiterAdapts feeds the limiter latencies with a fake clock: the limit
// grows while latency stays flat and the limit is what holds requests back,
// falls when latency rises past the long-term average or the target, and
// grows again once latency is back down.
func TestLimiterAdapts(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{Initial: 20, Min: 4, Max: 500, Queue: 0, Target: 50 * time.Millisecond,
		Tolerance: 1.5, Window: 10, Now: clk.Now})

	start := l.Stats().Limit
	calm := run(t, l, clk, 2000, 1000, 5*time.Millisecond)
	if calm <= start {
		t.Fatalf("limit %d after calm traffic at the limit, want above the initial %d", calm, start)
	}
	t.Logf("limit %d → %d with 5 ms latencies", start, calm)

	slow := run(t, l, clk, 2000, 1000, 200*time.Millisecond)
	if slow >= calm/2 {
		t.Fatalf("limit %d after latency rose from 5 ms to 200 ms, want well below %d", slow, calm)
	}
	t.Logf("limit %d → %d with 200 ms latencies", calm, slow)

	back := run(t, l, clk, 4000, 1000, 5*time.Millisecond)
	if back <= slow*2 {
		t.Fatalf("limit %d after latency came back to 5 ms, want well above %d", back, slow)
	}
	t.Logf("limit %d → %d with 5 ms latencies again", slow, back)

	if lo := run(t, l, clk, 5000, 1000, 10*time.Second); lo != 4 {
		t.Errorf("limit %d after very long latencies, want the minimum 4", lo)
	}
}

func TestLimiterHoldsBelowTheTarget(t *testing.T) {
	// Latency that grows with the work let in (a queue in front of one
	// server: each request adds 1 ms): the limit settles where the latency
	// is near the 50 ms target, not at the maximum.
	clk := newClock()
	l := NewLimiter(LimiterConfig{Initial: 10, Min: 1, Max: 1000, Queue: 0, Target: 50 * time.Millisecond,
		Window: 10, Now: clk.Now})
	for range 300 {
		n := l.Stats().Limit
		run(t, l, clk, n, n, time.Duration(n)*time.Millisecond)
	}
	if got := l.Stats().Limit; got < 25 || got > 75 {
		t.Errorf("limit %d, want near 50 (where latency meets the 50 ms target)", got)
	}
}

func TestLimiterDoesNotGrowWhenIdle(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{Initial: 100, Min: 1, Max: 1000, Window: 10, Now: clk.Now})
	if got := run(t, l, clk, 1000, 2, time.Millisecond); got != 100 {
		t.Errorf("limit %d after 2 at a time under a limit of 100, want 100 unchanged", got)
	}
}

func TestLimiterBacksOffOnDrops(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{Initial: 100, Min: 1, Max: 1000, Window: 10, Now: clk.Now})
	for range 10 {
		tok, err := l.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Millisecond)
		tok.Done(true)
	}
	if got := l.Stats().Limit; got != 90 {
		t.Errorf("limit %d after a window of dropped work, want 90 (×0.9)", got)
	}
}

func TestPollInterval(t *testing.T) {
	clk := newClock()
	c := New(Config{PollInterval: 30 * time.Second, Now: clk.Now, Classes: map[Class]LimiterConfig{
		CachedRead: {Initial: 4, Min: 4, Max: 4, Queue: 0},
	}})
	if got := c.PollInterval(); got != 30*time.Second {
		t.Fatalf("calm: %s, want 30s", got)
	}
	var toks []*Token
	for range 3 {
		tok, err := c.Acquire(context.Background(), CachedRead)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	if got := c.PollInterval(); got != time.Minute {
		t.Fatalf("3 of 4 slots in use: %s, want 1m", got)
	}
	toks = append(toks, must(c.Acquire(context.Background(), CachedRead)))
	if _, err := c.Acquire(context.Background(), CachedRead); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("a fifth: %v, want ErrOverloaded", err)
	}
	if got := c.PollInterval(); got != 2*time.Minute {
		t.Fatalf("just refused: %s, want 2m", got)
	}
	for _, tok := range toks {
		tok.Done(false)
	}
	clk.Add(time.Minute)
	if got := c.PollInterval(); got != 30*time.Second {
		t.Fatalf("a minute after the last refusal, all slots free: %s, want 30s", got)
	}
	if tok, err := c.Acquire(context.Background(), Unlimited); tok != nil || err != nil {
		t.Errorf("Unlimited: %v %v, want no token and no error", tok, err)
	}
	var off *Controller
	if tok, err := off.Acquire(context.Background(), LedgerWrite); tok != nil || err != nil {
		t.Errorf("nil controller: %v %v, want no token and no error", tok, err)
	}
	tok := (*Token)(nil)
	tok.Done(false) // a nil token is fine to give back
}

func must(t *Token, err error) *Token {
	if err != nil {
		panic(err)
	}
	return t
}
