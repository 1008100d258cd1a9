package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/metrics"
)

type ctxKey int

const (
	keyReqInfo ctxKey = iota
	keyCaller
)

// reqInfo is what withBasics gives every request: its id and the server's
// logger, which logger(r) combines only when something is logged — most
// requests log nothing, and a logger With the id costs allocations and
// formatting on every one of them (measured: 1.5 % of the server's CPU at
// three times capacity).
type reqInfo struct {
	id  string
	log *slog.Logger
	// classify is the store's ErrorClassifier (nil without one): writeError
	// tells a database outage from a bug with it.
	classify func(error) error
}

func requestID(r *http.Request) string {
	info, _ := r.Context().Value(keyReqInfo).(reqInfo)
	return info.id
}

func logger(r *http.Request) *slog.Logger {
	if info, ok := r.Context().Value(keyReqInfo).(reqInfo); ok {
		return info.log.With("request_id", info.id)
	}
	return slog.Default()
}

func caller(r *http.Request) auth.Key {
	k, _ := r.Context().Value(keyCaller).(auth.Key)
	return k
}

// withBasics gives every request an id, a logger that carries it, a
// deadline, and turns a panic into a logged 500 instead of a dropped
// connection.
func (s *Server) withBasics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(headerRequestID)
		if id == "" || len(id) > 64 || !printableASCII(id) {
			id = newRequestID()
		}
		w.Header().Set(headerRequestID, id)
		ctx := context.WithValue(r.Context(), keyReqInfo, reqInfo{id: id, log: s.log, classify: s.classify})
		timeout, badTimeout := requestTimeout(r, s.cfg.RequestTimeout) // overload.go
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				logger(r).Error("panic", "panic", p, "stack", string(debug.Stack()))
				if !sw.wrote {
					writeError(sw, r, ledger.Errorf(ledger.CodeInternal, "internal error"))
				}
			}
			if m := s.metrics; m != nil {
				// r.Pattern is what the mux matched, set on this very request
				// by ServeMux.ServeHTTP; "" when nothing matched.
				m.Request(r.Pattern, r.Method, sw.status, presentedKeyMode(r), time.Since(start))
				if sw.status == http.StatusServiceUnavailable || sw.status == http.StatusTooManyRequests {
					m.Refused(metrics.RefusalReason(sw.status, sw.code, ctx.Err() == context.DeadlineExceeded))
				}
			}
			// A refusal for load is counted (pointd_refusals_total), not
			// logged one by one: in a surge that was a log line and a write
			// to stderr per refusal (measured: 2.3 % of the server's CPU at
			// three times capacity, on the path that must stay cheapest).
			if s.cfg.LogRequests || (sw.status >= 500 && sw.code != ledger.CodeOverloaded) {
				logger(r).Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status,
					"duration_ms", float64(time.Since(start).Microseconds())/1000)
			}
		}()
		if badTimeout != nil {
			writeProblem(sw, r, badTimeout)
			return
		}
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	code   string // the problem code answered, set by writeProblem
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// presentedKeyMode is the mode of the API key a request presents, for the
// key_mode label: "live", "test", or "none" when it presents no pointd key.
// It does not say the key is valid: a test key sent to a live server counts
// as "test".
func presentedKeyMode(r *http.Request) string {
	_, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	mode, ok := auth.ParseMode(strings.TrimSpace(secret))
	if !ok {
		// A member's session token carries a mode too.
		if mode, ok = member.ParseSessionMode(strings.TrimSpace(secret)); !ok {
			return metrics.KeyModeNone
		}
	}
	return string(mode)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// credCache keeps recently checked credentials (API keys, member sessions)
// so that authenticating a request does not cost a database query: the ping
// endpoint must not touch the database, and a surge must not turn every
// request into a lookup. Entries live for ttl; a revocation, rotation or
// suspension drops them at once on this instance, and a lookup that began
// before such a drop does not put its (older) answer back.
type credCache[V any] struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]credEntry[V]
	gen uint64 // bumped by every drop
}

type credEntry[V any] struct {
	v       V
	expires time.Time
}

func newCredCache[V any](ttl time.Duration) *credCache[V] {
	return &credCache[V]{ttl: ttl, m: map[string]credEntry[V]{}}
}

func (c *credCache[V]) get(h string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || time.Now().After(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// begin is called before a lookup; put is given what it returned.
func (c *credCache[V]) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps v unless something was dropped since the lookup began (that
// lookup may have read the row before the change the drop stands for).
func (c *credCache[V]) put(h string, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) > 100_000 { // a flood of random credentials must not grow memory without bound
		clear(c.m)
	}
	c.m[h] = credEntry[V]{v: v, expires: time.Now().Add(c.ttl)}
}

// drop forgets every entry that matches, so that the next request with it
// looks it up again.
func (c *credCache[V]) drop(match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for h, e := range c.m {
		if match(e.v) {
			delete(c.m, h)
		}
	}
}

type cachedKey struct {
	key   auth.Key
	found bool
	// The status of the key's merchant and store when it was looked up: a
	// suspended merchant's keys stop working (see ownerStatus).
	merchantStatus, storeStatus string
}

// authenticate resolves the bearer key and checks its mode and roles.
func (s *Server) authenticate(roles ...auth.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			scheme, secret, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			secret = strings.TrimSpace(secret)
			if !strings.EqualFold(scheme, "Bearer") || secret == "" {
				writeProblem(w, r, &ledger.Error{Code: codeUnauthorized, Message: "send an API key or a member session token as 'Authorization: Bearer pd_…'"})
				return
			}
			if smode, ok := member.ParseSessionMode(secret); ok {
				k, ok := s.authenticateSession(w, r, secret, smode, roles)
				if ok {
					next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyCaller, k)))
				}
				return
			}
			mode, ok := auth.ParseMode(secret)
			if !ok || len(secret) > 128 {
				writeProblem(w, r, &ledger.Error{Code: codeUnauthorized, Message: "this is not a pointd API key"})
				return
			}
			if mode != s.cfg.Mode {
				s.metrics.KeyModeMismatch(string(mode))
				logger(r).Warn("key of the wrong mode", "key_mode", mode, "server_mode", s.cfg.Mode, "prefix", safePrefix(secret))
				writeProblem(w, r, &ledger.Error{Code: codeKeyModeMismatch,
					Message: "this is a " + string(mode) + " key; this server is " + string(s.cfg.Mode)})
				return
			}
			hash := auth.HashSecret(secret)
			ck, err := s.lookupKey(r.Context(), hash)
			if err != nil {
				writeError(w, r, err)
				return
			}
			if !ck.found || !ck.key.Usable(time.Now()) {
				writeProblem(w, r, &ledger.Error{Code: codeUnauthorized, Message: "this API key is unknown or revoked, or its rotation overlap has ended"})
				return
			}
			if len(roles) > 0 && !hasRole(ck.key.Role, roles) {
				writeProblem(w, r, ledger.Errorf(ledger.CodeForbidden, "a %s key may not do this", ck.key.Role))
				return
			}
			if err := ownerSuspended(ck); err != nil {
				writeProblem(w, r, err)
				return
			}
			s.usage.note(ck.key.ID, s.office)
			ctx := context.WithValue(r.Context(), keyCaller, ck.key)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func hasRole(r auth.Role, roles []auth.Role) bool {
	for _, x := range roles {
		if r == x {
			return true
		}
	}
	return false
}

func safePrefix(secret string) string {
	if len(secret) > 12 {
		return secret[:12]
	}
	return secret
}
