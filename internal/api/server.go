// Package api is pointd's HTTP/JSON interface under /v1: thin handlers that
// decode and validate, call the ledger, and answer JSON or RFC 9457 problems.
package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"net/netip"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pointd/pointd/internal/admission"
	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/metrics"
	"github.com/pointd/pointd/internal/notice"
	"github.com/pointd/pointd/internal/phone"
	"github.com/pointd/pointd/internal/privacy"
	"github.com/pointd/pointd/internal/ratelimit"
)

// Config tunes the HTTP layer.
type Config struct {
	Mode auth.Mode
	// Phones reads the phone numbers that requests carry (member creation,
	// lookups, login codes) into E.164; the zero Plan reads national
	// numbers as Korean ones (phone.DefaultRegion).
	Phones         phone.Plan
	RequestTimeout time.Duration // every request's deadline
	KeyCacheTTL    time.Duration // how long a checked key is trusted without a lookup
	LogRequests    bool
	// Tokens seals the cursors of member histories and the audit log
	// (privacy.Tokens). Nil: a key made up for this process, whose cursors
	// other instances and a restarted server refuse.
	Tokens *privacy.Tokens
	// DBStats, when set, reports the database connections for /readyz.
	DBStats func() DBStats
	// Metrics, when set, counts every request, refusal and key-mode
	// mismatch, and is served at GET /metrics. Nil turns all of that off:
	// no work is done per request and /metrics is not served.
	Metrics *metrics.Metrics
	// MetricsAuth requires an admin key (Authorization: Bearer) for
	// /metrics. Without it, /metrics answers loopback clients only and
	// refuses everyone else with 403.
	MetricsAuth bool

	// The read path (readpath.go). Shared, when set, keeps the caches in
	// Redis and spreads invalidations and notice publishes to every
	// instance. Notices is the notices' store; nil: the store, when it
	// implements notice.Store. NoticeMaxAge is the Cache-Control max-age of
	// notice answers (default 30 s); BadgePoll the badges' poll hint
	// when the server is calm (default 60 s).
	Shared       *cache.Shared
	Notices      notice.Store
	NoticeMaxAge time.Duration
	BadgePoll    time.Duration

	// Overload (overload.go). Each nil or zero turns its part off.
	//
	// Admission holds the per-class concurrency limits.
	Admission *admission.Controller
	// RateLimiter keeps the token buckets of KeyRate and IPRate.
	RateLimiter ratelimit.Limiter
	// KeyRate is the limit of a key that has none of its own.
	KeyRate ratelimit.Limit
	// IPRate is every client address's limit under /v1/.
	IPRate ratelimit.Limit
	// PollInterval is the Poll-Interval answered when Admission is nil
	// (with Admission, it says; it rises with load); 0: 30 s.
	PollInterval time.Duration
}

// DBStats is the database pool as /readyz shows it: whatever the load,
// InUse never passes Max.
type DBStats struct {
	InUse int `json:"db_conns_in_use"`
	Max   int `json:"db_conns_max"`
}

// Server serves the API.
type Server struct {
	cfg       Config
	classify  func(error) error // the store's ledger.ErrorClassifier; nil without one
	store     ledger.Store
	keyStore  auth.KeyStore
	writer    *ledger.Writer
	log       *slog.Logger
	keys      *credCache[cachedKey]
	keyFlight singleflight.Group
	ready     func(context.Context) error
	metrics   *metrics.Metrics // nil: metrics off
	// office is the back office's store: the ledger's store when it
	// implements backoffice.Store (both SQL stores do); nil turns the
	// operator endpoints into 500s.
	office backoffice.Store
	usage  *keyUsage

	// The member side (me.go): logins, sessions, /v1/me.
	members     *member.Service // nil: member logins answer 503
	memberStore member.Store
	sessions    *credCache[cachedSession]
	rp          *readPath // readpath.go
}

// New builds a Server. ready, when set, backs /readyz.
func New(cfg Config, store ledger.Store, keys auth.KeyStore, writer *ledger.Writer, log *slog.Logger, ready func(context.Context) error) *Server {
	if cfg.Mode == "" {
		cfg.Mode = auth.ModeLive
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Tokens == nil {
		cfg.Tokens = privacy.RandomTokens()
	}
	if cfg.KeyCacheTTL <= 0 {
		cfg.KeyCacheTTL = 10 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	if cfg.NoticeMaxAge <= 0 {
		cfg.NoticeMaxAge = 30 * time.Second
	}
	if cfg.BadgePoll <= 0 {
		cfg.BadgePoll = time.Minute
	}
	if cfg.Metrics != nil && cfg.Admission != nil {
		cfg.Metrics.WatchAdmission(admissionStats(cfg.Admission))
	}
	if cfg.Metrics != nil && cfg.RateLimiter != nil {
		cfg.Metrics.WatchRateLimits()
	}
	office, _ := store.(backoffice.Store)
	s := &Server{cfg: cfg, store: store, keyStore: keys, writer: writer, log: log,
		keys: newCredCache[cachedKey](cfg.KeyCacheTTL), ready: ready, metrics: cfg.Metrics,
		office: office, usage: newKeyUsage(keyUsageFlushEvery),
		sessions: newCredCache[cachedSession](cfg.KeyCacheTTL)}
	// Both stores are member stores too; the defaults (codes written to
	// the log) stand until UseMembers configures the service.
	if ms, ok := store.(member.Store); ok {
		s.members, s.memberStore = member.NewService(member.Config{Mode: cfg.Mode, Log: log}, ms, store), ms
	}
	// A database outage must be told from a bug wherever a store's error
	// reaches the caller (writeError).
	if c, ok := store.(ledger.ErrorClassifier); ok {
		s.classify = c.ClassifyError
	} else if c, ok := keys.(ledger.ErrorClassifier); ok {
		s.classify = c.ClassifyError
	}
	s.initReadPath()
	return s
}

// Handler is the whole API with its middleware.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	any := s.authenticate()
	admin := s.authenticate(auth.RoleAdmin)
	pos := s.authenticate(auth.RoleAdmin, auth.RolePOS)
	// Reads are open to viewers too: a viewer reads what an admin reads.
	read := s.authenticate(auth.RoleAdmin, auth.RoleViewer, auth.RolePOS)
	office := s.authenticate(auth.RoleAdmin, auth.RoleViewer)
	handle := func(pattern string, mw func(http.Handler) http.Handler, h http.HandlerFunc) {
		mux.Handle(pattern, mw(s.admit(pattern, h))) // admit: overload.go
	}
	open := func(h http.Handler) http.Handler { return h }

	handle("GET /healthz", open, s.healthz)
	handle("GET /readyz", open, s.readyz)
	handle("POST /v1/ping", any, s.ping)
	handle("GET /v1/openapi.json", open, s.openapi)

	handle("POST /v1/merchants", admin, s.createMerchant)
	handle("GET /v1/merchants/{id}", read, s.getMerchant)
	handle("POST /v1/merchants/{id}/stores", admin, s.createStore)
	handle("GET /v1/stores/{id}", read, s.getStore)
	handle("POST /v1/members", pos, s.createMember)
	handle("GET /v1/members", read, s.findMembers)
	handle("GET /v1/members/{id}", read, s.getMember)
	handle("GET /v1/members/{id}/balance", read, s.getBalance)
	handle("GET /v1/members/{id}/transactions", read, s.listTransactions)
	handle("GET /v1/members/{id}/lots", read, s.listLots)
	handle("POST /v1/keys", admin, s.createKey)

	handle("POST /v1/earns", pos, s.earn)
	handle("POST /v1/redemptions", pos, s.redeem)
	handle("POST /v1/holds", pos, s.hold)
	handle("GET /v1/holds/{id}", read, s.getHold)
	handle("POST /v1/holds/{id}/capture", pos, s.capture)
	handle("POST /v1/holds/{id}/void", pos, s.void)
	handle("POST /v1/cancellations", pos, s.cancel)
	handle("POST /v1/adjustments", admin, s.adjust)
	handle("GET /v1/transactions/{id}", read, s.getTransaction)

	// Operators' back office: admin changes, admin and viewer read.
	handle("GET /v1/merchants", office, s.listMerchants)
	handle("PATCH /v1/merchants/{id}", admin, s.updateMerchant)
	handle("POST /v1/merchants/{id}/suspend", admin, s.suspendMerchant)
	handle("POST /v1/merchants/{id}/reactivate", admin, s.reactivateMerchant)
	handle("GET /v1/merchants/{id}/stores", read, s.listStores)
	handle("PATCH /v1/stores/{id}", admin, s.updateStore)
	handle("POST /v1/stores/{id}/suspend", admin, s.suspendStore)
	handle("POST /v1/stores/{id}/reactivate", admin, s.reactivateStore)
	handle("POST /v1/members/{id}/suspend", admin, s.suspendMember)
	handle("POST /v1/members/{id}/reactivate", admin, s.reactivateMember)
	handle("POST /v1/members/{id}/merge", admin, s.mergeMember)
	handle("GET /v1/keys", office, s.listKeys)
	handle("POST /v1/keys/{id}/revoke", admin, s.revokeKey)
	handle("POST /v1/keys/{id}/rotate", admin, s.rotateKey)
	handle("GET /v1/audit-log", office, s.auditLog)

	// Members' own API (me.go): logging in needs no
	// key (a key inside a phone app is no secret), /v1/me* take only a
	// member's session and always mean that session's member.
	self := s.authenticate(auth.RoleMember)
	handle("POST /v1/auth/otp", s.appOptional, s.requestOTP)
	handle("POST /v1/auth/sessions", s.appOptional, s.createSession)
	handle("DELETE /v1/auth/sessions/current", self, s.deleteSession)
	handle("GET /v1/me", self, s.getMe)
	handle("PATCH /v1/me", self, s.patchMe)
	handle("DELETE /v1/me", self, s.deleteMe)
	handle("GET /v1/me/balance", self, s.getMyBalance)
	handle("GET /v1/me/transactions", self, s.listMyTransactions)
	// The rotating code the member shows at the till (membercode.go).
	handle("GET /v1/me/code", self, s.getMyCode)
	handle("GET /v1/me/code.svg", self, s.getMyCodeSVG)

	// Notices and badges (notices.go, badges.go): readable by
	// every key role and by member sessions; badges by admin and app keys
	// (member sessions get /v1/me/badges).
	readers := s.authenticate(auth.RoleAdmin, auth.RoleViewer, auth.RolePOS, auth.RoleApp, auth.RoleMember)
	appOrAdmin := s.authenticate(auth.RoleAdmin, auth.RoleApp)
	handle("POST /v1/notices", admin, s.createNotice)
	handle("GET /v1/notices", readers, s.listNotices)
	handle("GET /v1/notices/{id}", readers, s.getNotice)
	handle("GET /v1/members/{id}/badges", appOrAdmin, s.memberBadges)
	handle("POST /v1/members/{id}/badges/seen", appOrAdmin, s.memberBadgesSeen)
	handle("GET /v1/me/badges", self, s.myBadges)
	handle("POST /v1/me/badges/seen", self, s.myBadgesSeen)

	// Operations: outside /v1, not part of the API's contract.
	if s.metrics != nil {
		guard := loopbackOnly
		if s.cfg.MetricsAuth {
			guard = admin
		}
		mux.Handle("GET /metrics", guard(s.metrics.Handler()))
	}
	handle("GET /debug/pprof/", admin, pprof.Index)
	handle("GET /debug/pprof/cmdline", admin, cmdline)
	handle("GET /debug/pprof/profile", admin, pprof.Profile)
	handle("GET /debug/pprof/symbol", admin, pprof.Symbol)
	handle("POST /debug/pprof/symbol", admin, pprof.Symbol)
	handle("GET /debug/pprof/trace", admin, pprof.Trace)

	return closeFramedTwice(s.withBasics(s.limitIP(problemRouting(mux))))
}

// loopbackOnly lets through requests from this machine's loopback addresses
// (127.0.0.0/8, ::1) and refuses the others with 403. Behind a reverse proxy
// on the same machine every request looks local: use --metrics-auth there.
func loopbackOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isLoopback(r.RemoteAddr) {
			writeProblem(w, r, ledger.Errorf(ledger.CodeForbidden,
				"/metrics answers only on loopback unless the server runs with --metrics-auth (then with an admin key)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isLoopback reports whether a RemoteAddr ("host:port") is a loopback address.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// problemRouting answers the router's own 404 and 405 in the same problem
// format as everything else, keeping the Allow header the mux computed.
func problemRouting(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if allow := rec.Header().Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		switch rec.Code {
		case http.StatusMethodNotAllowed:
			writeProblem(w, r, &ledger.Error{Code: codeMethodNotAllowed, Message: r.Method + " is not allowed here; see the Allow header"})
		case http.StatusNotFound:
			writeProblem(w, r, &ledger.Error{Code: codeRouteNotFound, Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
		default: // a redirect the mux decided on (cleaned path)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		}
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			// The probe is a database read: whatever it failed with, the
			// database does not serve, and a load balancer should send the
			// traffic elsewhere until it does.
			logger(r).Warn("not ready", "err", err)
			writeProblem(w, r, &ledger.Error{Code: ledger.CodeDatabaseUnavailable, Message: "the database is not reachable", RetryAfter: ledger.DatabaseRetryAfter})
			return
		}
	}
	out := map[string]any{"status": "ready", "write_queue": s.writer.QueueDepth()}
	if s.cfg.DBStats != nil {
		st := s.cfg.DBStats()
		out["db_conns_in_use"], out["db_conns_max"] = st.InUse, st.Max
	}
	writeJSON(w, http.StatusOK, out)
}

type pingRequest struct {
	Message string `json:"message"`
}

// ping goes through the same middleware and decoding as every endpoint but
// does no database work: the ceiling that benchmarks compare against.
func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	var req pingRequest
	if err := decode(r, &req, true); err != nil {
		writeProblem(w, r, err)
		return
	}
	if len(req.Message) > 256 {
		writeProblem(w, r, ledger.Invalid("message", "at most 256 bytes"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pong": true, "message": req.Message, "key_prefix": caller(r).Prefix})
}
