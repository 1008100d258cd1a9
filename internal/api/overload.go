package api

import (
	"errors"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/ratelimit"
)

// Overload is a normal state: the client's own
// deadline, per-key and per-IP rate limits, per-class admission control and
// the poll interval. The order a request meets them in:
//
//	withBasics      deadline (the server's, or shorter if the client asks)
//	limitIP         the client address's token bucket (before any key lookup)
//	authenticate    the key
//	admit           the key's token bucket, then a slot of the route's class
//
// so that the cheapest refusals come first and a flood of requests with
// random keys is stopped before it costs key lookups.

const (
	codeRateLimited = "rate_limited"

	// headerRequestTimeout lets a client ask for a deadline shorter than
	// the server's, in seconds (decimals allowed, like "2.5"). No standard
	// header says this; the name follows --request-timeout and the unit
	// follows Retry-After, the header the client reads on the way back.
	headerRequestTimeout = "Request-Timeout"
	// headerPollInterval tells clients that poll how many seconds to wait
	// before asking again; it rises when the server is under load.
	headerPollInterval = "Poll-Interval"

	// minRequestTimeout is the shortest deadline a client may ask for.
	minRequestTimeout = time.Millisecond
)

// requestTimeout is the deadline of r: the server's, or the shorter one the
// client asked for with Request-Timeout. A longer one is silently capped: a
// client may give up sooner, never hold the server longer.
func requestTimeout(r *http.Request, server time.Duration) (time.Duration, *ledger.Error) {
	v, ok := r.Header[headerRequestTimeout]
	if !ok {
		return server, nil
	}
	bad := ledger.Invalid(headerRequestTimeout, "the %s header must be one number of seconds, like 2.5, from 0.001 up", headerRequestTimeout)
	if len(v) != 1 || len(v[0]) == 0 || len(v[0]) > 16 {
		return server, bad
	}
	dot := false
	for i := 0; i < len(v[0]); i++ {
		switch c := v[0][i]; {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(v[0])-1:
			dot = true
		default: // no sign, exponent, NaN or Inf: one plain decimal
			return server, bad
		}
	}
	secs, err := strconv.ParseFloat(v[0], 64)
	if err != nil {
		return server, bad
	}
	if secs >= server.Seconds() { // longer than the server allows (however long): capped
		return server, nil
	}
	d := time.Duration(secs * float64(time.Second))
	if d < minRequestTimeout {
		return server, bad
	}
	return min(d, server), nil
}

// classOf is the admission class of a route pattern ("POST /v1/earns").
func classOf(pattern string) admission.Class {
	method, path, _ := strings.Cut(pattern, " ")
	switch {
	case path == "/healthz" || path == "/readyz" || path == "/metrics" || strings.HasPrefix(path, "/debug/"):
		// Never limited: the operator must see in, whatever the load (and
		// a 30 s CPU profile must not hold a slot).
		return admission.Unlimited
	case path == "/v1/ping" || path == "/v1/openapi.json" || strings.HasPrefix(path, "/v1/me/badges") ||
		strings.HasPrefix(path, "/v1/members/{id}/badges") || (method == http.MethodGet && strings.HasPrefix(path, "/v1/notices")):
		return admission.CachedRead
	case method == http.MethodPost && ledgerWrites[path]:
		return admission.LedgerWrite
	}
	return admission.DBRead
}

// ledgerWrites are the routes whose work goes through the ledger writer.
var ledgerWrites = map[string]bool{
	"/v1/earns": true, "/v1/redemptions": true, "/v1/holds": true, "/v1/holds/{id}/capture": true,
	"/v1/holds/{id}/void": true, "/v1/cancellations": true, "/v1/adjustments": true,
	"/v1/members/{id}/merge": true,
}

// admit wraps the handler of pattern, inside authentication: the caller's
// rate limit, the poll interval, then a slot of the route's class for as
// long as the handler runs.
func (s *Server) admit(pattern string, h http.Handler) http.Handler {
	class := classOf(pattern)
	method, path, _ := strings.Cut(pattern, " ")
	poll := method == http.MethodGet && strings.HasPrefix(path, "/v1/")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if k := caller(r); k.ID != "" && s.cfg.RateLimiter != nil {
			lim := s.cfg.KeyRate
			switch {
			case k.RateLimitPerSecond > 0:
				lim = ratelimit.Limit{PerSecond: float64(k.RateLimitPerSecond), Burst: k.RateLimitBurst}
			case k.Role == auth.RoleAdmin:
				// Operators' tools read in bulk on purpose (pointd surge's
				// verdict, reconciliation): an admin key is limited only
				// when it was given a limit of its own.
				lim = ratelimit.Limit{}
			}
			if !s.rateLimit(w, r, "key:"+k.ID, lim, metrics.ScopeKey) {
				return
			}
		}
		if poll {
			w.Header().Set(headerPollInterval, strconv.Itoa(int(s.pollInterval()/time.Second)))
		}
		if class == admission.Unlimited || s.cfg.Admission == nil {
			h.ServeHTTP(w, r)
			return
		}
		tok, err := s.cfg.Admission.Acquire(r.Context(), class)
		switch {
		case errors.Is(err, admission.ErrOverloaded):
			writeProblem(w, r, &ledger.Error{Code: ledger.CodeOverloaded, RetryAfter: 1,
				Message: "the server is at its limit for this kind of request; retry after the Retry-After delay (a POST with the same Idempotency-Key)"})
			return
		case err != nil: // the caller left, or its deadline passed, while it waited
			writeProblem(w, r, &ledger.Error{Code: ledger.CodeUnavailable, RetryAfter: 1,
				Message: "the request ran out of time before it could start; nothing was done"})
			return
		}
		// Work let in but refused further down (the writer's 503, a
		// deadline, a panic) tells the limiter it let in too much. Deferred:
		// a handler that panics must not keep its slot forever.
		defer func() {
			dropped := r.Context().Err() != nil
			if sw, ok := w.(*statusWriter); ok && (sw.status == http.StatusServiceUnavailable || !sw.wrote) {
				dropped = true
			}
			tok.Done(dropped)
		}()
		h.ServeHTTP(w, r)
	})
}

// limitIP applies the client address's rate limit to everything under /v1/,
// before the key is even looked up.
func (s *Server) limitIP(next http.Handler) http.Handler {
	if s.cfg.RateLimiter == nil || s.cfg.IPRate.Unlimited() {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			if !s.rateLimit(w, r, "ip:"+clientBucket(r.RemoteAddr), s.cfg.IPRate, metrics.ScopeIP) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// rateLimit takes one request from bucket and sets the RateLimit headers;
// over the limit it answers 429 and returns false. A limiter that failed
// (Redis down) has already decided locally: the request is never failed
// for that.
func (s *Server) rateLimit(w http.ResponseWriter, r *http.Request, bucket string, lim ratelimit.Limit, scope string) bool {
	if lim.Unlimited() {
		return true
	}
	d, _ := s.cfg.RateLimiter.Allow(r.Context(), bucket, lim)
	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(d.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(d.Remaining))
	h.Set("RateLimit-Reset", strconv.Itoa(ceilSeconds(d.ResetAfter, 0)))
	if d.Allowed {
		return true
	}
	s.metrics.RateLimited(scope)
	who := "this API key"
	if scope == metrics.ScopeIP {
		who = "this client address"
	}
	writeProblem(w, r, &ledger.Error{Code: codeRateLimited, RetryAfter: ceilSeconds(d.RetryAfter, 1),
		Message: who + " sent more than its limit of " + strconv.FormatFloat(lim.PerSecond, 'f', -1, 64) +
			" requests per second; retry after the Retry-After delay"})
	return false
}

// ceilSeconds rounds d up to whole seconds, at least least.
func ceilSeconds(d time.Duration, least int) int {
	return max(least, int(math.Ceil(d.Seconds())))
}

// admissionStats adapts the controller's state for the metrics.
func admissionStats(c *admission.Controller) func() []metrics.AdmissionClass {
	return func() []metrics.AdmissionClass {
		var out []metrics.AdmissionClass
		for _, s := range c.Stats() {
			out = append(out, metrics.AdmissionClass{Class: s.Class.String(), Limit: s.Limit,
				InFlight: s.InFlight, Waiting: s.Waiting, Refused: s.Refused})
		}
		return out
	}
}

// maxKeyRate bounds a key's own limit: far above any one integration, low
// enough that rate × seconds never overflows anything.
const maxKeyRate = 1_000_000

// checkKeyRateLimit validates the rate limit fields of POST /v1/keys.
func checkKeyRateLimit(perSecond, burst int) *ledger.Error {
	switch {
	case perSecond < 0 || perSecond > maxKeyRate:
		return ledger.Invalid("rate_limit_per_second", "must be from 0 (the server's default) to %d", maxKeyRate)
	case burst < 0 || burst > maxKeyRate:
		return ledger.Invalid("rate_limit_burst", "must be from 0 (one second's worth) to %d", maxKeyRate)
	case burst > 0 && perSecond == 0:
		return ledger.Invalid("rate_limit_burst", "needs rate_limit_per_second: a burst belongs to the key's own limit")
	}
	return nil
}

// calmPollInterval is what Poll-Interval says when the server is calm.
func (s *Server) calmPollInterval() time.Duration {
	switch {
	case s.cfg.Admission != nil:
		return s.cfg.Admission.CalmPollInterval()
	case s.cfg.PollInterval > 0:
		return s.cfg.PollInterval
	}
	return 30 * time.Second
}

// pollInterval is what Poll-Interval says now.
func (s *Server) pollInterval() time.Duration {
	switch {
	case s.cfg.Admission != nil:
		return s.cfg.Admission.PollInterval()
	case s.cfg.PollInterval > 0:
		return s.cfg.PollInterval
	}
	return 30 * time.Second
}

// clientBucket is the rate-limit bucket of a client address: the address
// itself for IPv4, its /64 for IPv6, since one IPv6 client commonly holds a
// whole /64 and could otherwise take a new bucket per request.
func clientBucket(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
