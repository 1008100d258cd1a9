package surge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// client talks to the target. Its dialer can cut connections right after a
// request has been written (the conn-drop fault): the server gets the
// request, the client never sees the answer and must retry.
type client struct {
	base    string
	hc      *http.Client
	dropPct atomic.Int64 // per mille of writes after which the connection is cut
	dropped atomic.Int64

	mu  sync.Mutex
	rng *rand.Rand
}

func newClient(base string, timeout time.Duration, conns int, seed uint64) *client {
	c := &client{base: base, rng: rand.New(rand.NewPCG(seed, 0xd20b))}
	d := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &dropConn{Conn: conn, c: c}, nil
		},
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second,
	}
	c.hc = &http.Client{Transport: tr, Timeout: timeout}
	return c
}

func (c *client) close() { c.hc.CloseIdleConnections() }

func (c *client) chance(perMille int64) bool {
	if perMille <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Int64N(1000) < perMille
}

// dropConn closes itself after a write when the conn-drop fault is active.
type dropConn struct {
	net.Conn
	c *client
}

func (d *dropConn) Write(p []byte) (int, error) {
	n, err := d.Conn.Write(p)
	if err == nil && d.c.chance(d.c.dropPct.Load()) {
		d.c.dropped.Add(1)
		// Let the request reach the server, then cut: the answer is lost.
		time.AfterFunc(time.Millisecond, func() { d.Conn.Close() })
	}
	return n, err
}

// answer is one HTTP exchange.
type answer struct {
	status   int
	header   http.Header
	body     []byte
	err      error // no complete answer
	code     string
	replayed bool
	latency  time.Duration
}

func (c *client) do(ctx context.Context, method, path, key, idem string, body []byte) answer {
	return c.doIf(ctx, method, path, key, idem, body, "")
}

// doIf is do with an If-None-Match (when etag is not empty): a member app
// that kept what it read asks whether it changed.
func (c *client) doIf(ctx context.Context, method, path, key, idem string, body []byte, etag string) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return answer{err: err, latency: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: b, err: err, latency: time.Since(start)}
	if err != nil {
		return a
	}
	a.replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if resp.StatusCode >= 400 {
		var p struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &p)
		a.code = p.Code
	}
	return a
}

// retryable says whether the outcome is still open: asking again with the
// same key and body will tell.
func (a answer) retryable() bool {
	if a.err != nil {
		return true
	}
	switch a.status {
	case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway,
		http.StatusGatewayTimeout, http.StatusInternalServerError:
		return true
	case http.StatusConflict:
		return a.code == "idempotency_key_in_flight"
	}
	return false
}

// refusal names a refusal for load ("" if a is none).
func (a answer) refusal() string {
	switch {
	case a.status == http.StatusTooManyRequests:
		return "rate_limited"
	case a.status == http.StatusServiceUnavailable && a.code != "":
		return a.code
	case a.status == http.StatusServiceUnavailable:
		return "unavailable"
	}
	return ""
}

// retryAfter is the wait the answer asks for, else the backoff of attempt n
// (0.5 s, 1 s, 2 s … at most 30 s).
func (a answer) retryAfter(n int) time.Duration {
	if a.header != nil {
		if s, err := strconv.Atoi(a.header.Get("Retry-After")); err == nil && s >= 0 {
			return min(time.Duration(s)*time.Second, 30*time.Second)
		}
	}
	d := 500 * time.Millisecond << min(n, 6)
	return min(d, 30*time.Second)
}

// retryPolicy bounds the retries of one operation.
type retryPolicy struct {
	maxAttempts int
	maxTotal    time.Duration
}

// observer sees every attempt (for the statistics).
type observer func(a answer)

// errGaveUp: no definitive answer within the retry bounds.
var errGaveUp = errors.New("no definitive answer after all retries")

// post sends the same request with the same key until a definitive answer or
// the policy's bounds; it returns the last answer.
func (c *client) post(ctx context.Context, path, key, idem string, body []byte, pol retryPolicy, obs observer) (answer, int, error) {
	start := time.Now()
	var a answer
	for n := 0; ; n++ {
		a = c.do(ctx, http.MethodPost, path, key, idem, body)
		if obs != nil {
			obs(a)
		}
		if !a.retryable() {
			return a, n + 1, nil
		}
		wait := a.retryAfter(n)
		if n+1 >= pol.maxAttempts || time.Since(start)+wait > pol.maxTotal || ctx.Err() != nil {
			return a, n + 1, errGaveUp
		}
		select {
		case <-ctx.Done():
			return a, n + 1, errGaveUp
		case <-time.After(wait):
		}
	}
}

// getJSON GETs path (retrying transient failures a few times) into out.
func (c *client) getJSON(ctx context.Context, path, key string, out any) (int, error) {
	var a answer
	for n := 0; n < 8; n++ {
		a = c.do(ctx, http.MethodGet, path, key, "", nil)
		if !a.retryable() {
			break
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(min(a.retryAfter(n), 3*time.Second)):
		}
	}
	if a.err != nil {
		return 0, a.err
	}
	if a.status != http.StatusOK {
		return a.status, fmt.Errorf("GET %s: HTTP %d %s", path, a.status, bytes.TrimSpace(a.body))
	}
	if out != nil {
		if err := json.Unmarshal(a.body, out); err != nil {
			return a.status, fmt.Errorf("GET %s: %v", path, err)
		}
	}
	return a.status, nil
}
