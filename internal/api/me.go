package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// The member side of the API: logging in with a phone number and
// a one-time code, the session that follows, and /v1/me, which is always
// the caller's own member and nobody else's.

func init() {
	// The member side's codes, in the one table of statuses.
	statusOf[member.CodeRateLimited] = http.StatusTooManyRequests
	statusOf[member.CodeInvalidCode] = http.StatusUnauthorized
}

// headerClientIP is how a member app's backend, calling with its app key,
// names the end user's address, so that the per-address limits count users
// and not the backend. Without an app key the header is ignored.
const headerClientIP = "Pointd-Client-IP"

// UseMembers replaces the member service New made (defaults, codes in the
// log) with a configured one. Call it before Handler.
func (s *Server) UseMembers(svc *member.Service, store member.Store) {
	s.members, s.memberStore = svc, store
}

// appOptional lets a request through without credentials, or with an app
// key (whose backend may then name the client's address); anything else it
// refuses, so that a wrong key is never silently ignored.
func (s *Server) appOptional(next http.Handler) http.Handler {
	withKey := s.authenticate(auth.RoleApp)(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			next.ServeHTTP(w, r)
			return
		}
		withKey.ServeHTTP(w, r)
	})
}

// clientIP is the address the per-address limits count: an IPv6 client
// counts by its /64, the block one subscriber usually gets (else a client
// would have 2^64 addresses to rotate through).
func clientIP(r *http.Request) string {
	var a netip.Addr
	var err error
	if caller(r).Role == auth.RoleApp {
		a, err = netip.ParseAddr(strings.TrimSpace(r.Header.Get(headerClientIP)))
	}
	if caller(r).Role != auth.RoleApp || err != nil {
		host, _, serr := net.SplitHostPort(r.RemoteAddr)
		if serr != nil {
			host = r.RemoteAddr
		}
		if a, err = netip.ParseAddr(host); err != nil {
			return host
		}
	}
	a = a.Unmap()
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

func (s *Server) needMembers(w http.ResponseWriter, r *http.Request) bool {
	if s.members == nil || s.memberStore == nil {
		writeProblem(w, r, &ledger.Error{Code: ledger.CodeUnavailable, Message: "member logins are not configured on this server"})
		return false
	}
	return true
}

type otpRequest struct {
	Phone string `json:"phone"`
}

type otpResponse struct {
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expires_at"`
}

// requestOTP sends a login code. It answers the same for any valid phone
// number, a member's or not: nobody learns from it who is a member.
func (s *Server) requestOTP(w http.ResponseWriter, r *http.Request) {
	if !s.needMembers(w, r) {
		return
	}
	var req otpRequest
	if err := decode(r, &req, false); err != nil {
		writeProblem(w, r, err)
		return
	}
	// The service reads the number in any spelling (and refuses what is
	// none), so that every spelling counts against one limit.
	exp, err := s.members.RequestCode(r.Context(), req.Phone, clientIP(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, otpResponse{Status: "code_sent", ExpiresAt: exp})
}

type sessionRequest struct {
	Phone string `json:"phone"`
	Code  string `json:"code"`
}

type sessionResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	MemberID  string    `json:"member_id"`
	NewMember bool      `json:"new_member"`
}

// createSession logs in with a code.
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	if !s.needMembers(w, r) {
		return
	}
	var req sessionRequest
	if err := decode(r, &req, false); err != nil {
		writeProblem(w, r, err)
		return
	}
	if len(req.Code) != 6 || strings.Trim(req.Code, "0123456789") != "" {
		writeProblem(w, r, ledger.Invalid("code", "must be the 6 digits of the code sent"))
		return
	}
	token, sess, created, err := s.members.Login(r.Context(), req.Phone, req.Code, clientIP(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	logger(r).Info("member logged in", "session", sess.Prefix, "member_id", sess.MemberID, "new_member", created)
	writeJSON(w, http.StatusCreated, sessionResponse{Token: token, ExpiresAt: sess.ExpiresAt, MemberID: sess.MemberID, NewMember: created})
}

// deleteSession logs out: the session stops working at once on this
// instance, within the session cache's TTL on the others.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	k := caller(r)
	if err := s.members.Logout(r.Context(), k.ID); err != nil {
		writeError(w, r, err)
		return
	}
	s.sessions.drop(func(e cachedSession) bool { return e.key.ID == k.ID })
	writeJSON(w, http.StatusOK, map[string]string{"status": "logged_out"})
}

func (s *Server) getMe(w http.ResponseWriter, r *http.Request) {
	p, err := s.memberStore.Profile(r.Context(), caller(r).MemberID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

type meUpdate struct {
	Name             *string `json:"name"`
	MarketingConsent *bool   `json:"marketing_consent"`
	AnalyticsConsent *bool   `json:"analytics_consent"`
}

func (s *Server) patchMe(w http.ResponseWriter, r *http.Request) {
	var req meUpdate
	if err := decode(r, &req, false); err != nil {
		writeProblem(w, r, err)
		return
	}
	if req.Name == nil && req.MarketingConsent == nil && req.AnalyticsConsent == nil {
		writeProblem(w, r, ledger.Invalid("name", "give at least one of name, marketing_consent, analytics_consent"))
		return
	}
	if req.Name != nil {
		if err := checkName("name", *req.Name); err != nil {
			writeProblem(w, r, err)
			return
		}
	}
	p, err := s.memberStore.UpdateProfile(r.Context(), caller(r).MemberID,
		member.ProfileUpdate{Name: req.Name, MarketingConsent: req.MarketingConsent, AnalyticsConsent: req.AnalyticsConsent},
		ledger.MicroTime(s.members.Now()))
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.forgetMember(r, caller(r).MemberID)
	writeJSON(w, http.StatusOK, p)
}

type withdrawResponse struct {
	MemberID     string `json:"member_id"`
	Status       string `json:"status"`
	FrozenPoints int64  `json:"frozen_points"`
}

// deleteMe withdraws the caller: see member.Store.Withdraw and the policy
// in docs/guarantees.md (points are frozen, not taken).
func (s *Server) deleteMe(w http.ResponseWriter, r *http.Request) {
	id := caller(r).MemberID
	if err := s.members.Withdraw(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	s.sessions.drop(func(e cachedSession) bool { return e.key.MemberID == id })
	s.forgetMember(r, id) // the erased name and phone must not be read from a cache
	b, err := s.store.Balance(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	logger(r).Info("member withdrew", "member_id", id)
	writeJSON(w, http.StatusOK, withdrawResponse{MemberID: id, Status: member.StatusWithdrawn, FrozenPoints: b.Balance})
}

// expiringWindow is how far ahead GET /v1/me/balance looks for expiring points.
const expiringWindow = 30 * 24 * time.Hour

type expiringLot struct {
	Points    int64     `json:"points"`
	ExpiresAt time.Time `json:"expires_at"`
}

type myBalance struct {
	ledger.Balance
	// ExpiringPoints are the points of lots that expire within 30 days,
	// ExpiringLots those lots, soonest first.
	ExpiringPoints int64         `json:"expiring_points"`
	ExpiringBefore time.Time     `json:"expiring_before"`
	ExpiringLots   []expiringLot `json:"expiring_lots"`
}

func (s *Server) getMyBalance(w http.ResponseWriter, r *http.Request) {
	id := caller(r).MemberID
	b, err := s.store.Balance(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	lots, err := s.store.MemberLots(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	until := ledger.MicroTime(s.members.Now().Add(expiringWindow))
	out := myBalance{Balance: b, ExpiringBefore: until, ExpiringLots: []expiringLot{}}
	for _, l := range lots { // earliest expiry first
		if l.ExpiresAt.After(until) {
			break
		}
		out.ExpiringPoints += l.Remaining
		out.ExpiringLots = append(out.ExpiringLots, expiringLot{Points: l.Remaining, ExpiresAt: l.ExpiresAt})
	}
	writeJSON(w, http.StatusOK, out)
}

// txTypes are the types a member may filter their history by.
var txTypes = map[string]ledger.TxType{}

func init() {
	for _, t := range []ledger.TxType{ledger.TxEarn, ledger.TxRedeem, ledger.TxHold, ledger.TxHoldVoid, ledger.TxHoldExpire,
		ledger.TxCancelEarn, ledger.TxCancelRedeem, ledger.TxExpire, ledger.TxAdjust} {
		txTypes[string(t)] = t
	}
}

// parseDay reads a date (YYYY-MM-DD, a UTC day) or an RFC 3339 time. A
// date as the end of a range means the end of that day: to=2026-03-31
// includes the 31st.
func parseDay(field, v string, end bool) (time.Time, *ledger.Error) {
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		if end {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, ledger.Invalid(field, "must be a date (2026-03-31) or an RFC 3339 time")
}

// listMyTransactions is the caller's history, newest first, filtered by
// type= (comma-separated, or repeated) and from=/to=.
func (s *Server) listMyTransactions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		switch name {
		case "limit", "cursor", "type", "from", "to":
		default:
			writeProblem(w, r, ledger.Invalid(name, "is not a parameter of this endpoint (limit, cursor, type, from, to)"))
			return
		}
	}
	purpose := historyPurpose(caller(r), caller(r).MemberID)
	before, limit, perr := s.historyPage(q, purpose)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	var f member.HistoryFilter
	seen := map[ledger.TxType]bool{}
	for _, v := range q["type"] {
		for _, name := range strings.Split(v, ",") {
			t, ok := txTypes[name]
			if !ok {
				writeProblem(w, r, ledger.Invalid("type", "must be transaction types among earn, redeem, hold, hold_void, hold_expire, cancel_earn, cancel_redeem, expire, adjust"))
				return
			}
			if !seen[t] {
				seen[t] = true
				f.Types = append(f.Types, t)
			}
		}
	}
	if v := q.Get("from"); v != "" {
		if f.From, perr = parseDay("from", v, false); perr != nil {
			writeProblem(w, r, perr)
			return
		}
	}
	if v := q.Get("to"); v != "" {
		if f.To, perr = parseDay("to", v, true); perr != nil {
			writeProblem(w, r, perr)
			return
		}
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		writeProblem(w, r, ledger.Invalid("to", "must be after from"))
		return
	}
	txns, err := s.memberStore.History(r.Context(), caller(r).MemberID, f, before, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, limitPage(txns, limit, s.txnCursor(purpose)))
}

// cachedSession is a checked session token as Server.sessions keeps it
// (credCache, like keys): a member app's reads must not each cost a session
// lookup. A logout or withdrawal drops the entries at once on the instance
// that served it; other instances notice within the TTL
// (Config.KeyCacheTTL, 10 s).
type cachedSession struct {
	key   auth.Key
	found bool
	ends  time.Time // the session's own expiry
}

// authenticateSession resolves a member session token (already known to be
// one by its prefix) into the caller: role member, MemberID set.
func (s *Server) authenticateSession(w http.ResponseWriter, r *http.Request, token string, mode auth.Mode, roles []auth.Role) (auth.Key, bool) {
	if mode != s.cfg.Mode {
		s.metrics.KeyModeMismatch(string(mode))
		logger(r).Warn("session of the wrong mode", "key_mode", mode, "server_mode", s.cfg.Mode, "prefix", safePrefix(token))
		writeProblem(w, r, &ledger.Error{Code: codeKeyModeMismatch,
			Message: "this is a " + string(mode) + " session token; this server is " + string(s.cfg.Mode)})
		return auth.Key{}, false
	}
	if s.members == nil || len(token) > 128 {
		writeProblem(w, r, &ledger.Error{Code: codeUnauthorized, Message: "this session is unknown, expired or revoked; log in again"})
		return auth.Key{}, false
	}
	hash := auth.HashSecret(token)
	h := string(hash)
	now := s.members.Now()
	e, ok := s.sessions.get(h)
	if !ok {
		v, err := sharedLoad(r.Context(), &s.keyFlight, "session\x00"+h, func(lctx context.Context) (any, error) {
			gen := s.sessions.begin()
			sess, err := s.members.Authenticate(lctx, token)
			var e cachedSession
			switch {
			case err == nil:
				e = cachedSession{found: true, ends: sess.ExpiresAt, key: auth.Key{ID: sess.ID, Prefix: sess.Prefix,
					Role: auth.RoleMember, Mode: sess.Mode, MemberID: sess.MemberID, CreatedAt: sess.CreatedAt}}
			case errors.Is(err, member.ErrNoSession):
			default:
				return cachedSession{}, err
			}
			s.sessions.put(h, e, gen)
			return e, nil
		})
		if err != nil {
			writeError(w, r, err)
			return auth.Key{}, false
		}
		e = v.(cachedSession)
	}
	if !e.found || !now.Before(e.ends) {
		writeProblem(w, r, &ledger.Error{Code: codeUnauthorized, Message: "this session is unknown, expired or revoked; log in again"})
		return auth.Key{}, false
	}
	if len(roles) > 0 && !hasRole(auth.RoleMember, roles) {
		writeProblem(w, r, ledger.Errorf(ledger.CodeForbidden, "a member session may not do this; it reads and changes only its own member under /v1/me"))
		return auth.Key{}, false
	}
	// A member an operator suspended keeps no use of their sessions: the
	// member is read through the directory cache, which the suspension
	// invalidates (operator.go), so this costs no query on the hot path.
	m, err := s.cachedMember(r.Context(), e.key.MemberID)
	if err != nil {
		writeError(w, r, err)
		return auth.Key{}, false
	}
	if m.Status == ledger.StatusSuspended {
		writeProblem(w, r, ledger.Errorf(ledger.CodeMemberSuspended, "this member is suspended; ask the operator"))
		return auth.Key{}, false
	}
	// A merge revokes the merged member's sessions; this refuses one a
	// cache still holds. Logging in again opens the member it went into.
	if m.Status == ledger.StatusMerged {
		writeProblem(w, r, &ledger.Error{Code: codeUnauthorized,
			Message: "this membership was merged into member " + m.MergedInto + "; log in again"})
		return auth.Key{}, false
	}
	return e.key, true
}
