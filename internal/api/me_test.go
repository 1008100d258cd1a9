package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/privacy"
	"github.com/pointd/pointd/internal/sqlite"
)

// The member side: logins with one-time codes, sessions, /v1/me, withdrawal
// and phone numbers at rest. Everything runs on the real handlers and
// stores; the clock and the code sender are the only things the tests hold.

// clock is a settable time for the member service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// inbox is a Sender that keeps the codes it is given, by phone.
type inbox struct {
	mu    sync.Mutex
	codes map[string][]string
	sent  chan struct{}
}

func newInbox() *inbox { return &inbox{codes: map[string][]string{}, sent: make(chan struct{}, 1000)} }

func (b *inbox) Send(_ context.Context, c member.Code) error {
	b.mu.Lock()
	b.codes[c.Phone] = append(b.codes[c.Phone], c.Code)
	b.mu.Unlock()
	b.sent <- struct{}{}
	return nil
}

// last waits for the newest code sent to phone.
func (b *inbox) last(t *testing.T, phone string, n int) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		b.mu.Lock()
		cs := b.codes[phone]
		b.mu.Unlock()
		if len(cs) >= n {
			return cs[n-1]
		}
		select {
		case <-b.sent:
		case <-deadline:
			t.Fatalf("no code #%d sent to %s", n, phone)
		}
	}
}

func (b *inbox) count(phone string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.codes[phone])
}

// memberSide is a harness whose member service has a test clock and inbox.
type memberSide struct {
	*harness
	clock *clock
	inbox *inbox
	svc   *member.Service
}

func newMemberSide(t *testing.T, tune func(*member.Config), opts ...option) *memberSide {
	t.Helper()
	clk := &clock{t: time.Now().UTC()}
	// The ledger's writer keeps the same time, so that expiry can be
	// tested by moving the clock.
	h := newHarness(t, append([]option{withWriter(ledger.WriterConfig{Now: clk.Now})}, opts...)...)
	m := &memberSide{harness: h, clock: clk, inbox: newInbox()}
	cfg := member.Config{Mode: h.cfg.mode, Sender: m.inbox, Now: m.clock.Now, IPRequests: 1000, PhoneCodes: 5}
	if tune != nil {
		tune(&cfg)
	}
	ms := h.store.(member.Store)
	m.svc = member.NewService(cfg, ms, h.store)
	h.api.UseMembers(m.svc, ms)
	return m
}

func (m *memberSide) at(t *testing.T) *memberSide {
	c := *m
	c.harness = m.harness.at(t)
	return &c
}

// askCode asks for a code for phone and returns the answer.
func (m *memberSide) askCode(phone string, header map[string]string) reply {
	m.t.Helper()
	return m.do(req{method: http.MethodPost, path: "/v1/auth/otp", body: map[string]any{"phone": phone}, header: header})
}

func (m *memberSide) tryLogin(phone, code string) reply {
	m.t.Helper()
	return m.do(req{method: http.MethodPost, path: "/v1/auth/sessions", body: map[string]any{"phone": phone, "code": code}})
}

// login goes through the whole flow and returns the session.
func (m *memberSide) login(phone string) sessionResponse {
	m.t.Helper()
	n := m.inbox.count(phone) + 1
	want[otpResponse](m.t, m.askCode(phone, nil), http.StatusAccepted)
	code := m.inbox.last(m.t, phone, n)
	return want[sessionResponse](m.t, m.tryLogin(phone, code), http.StatusCreated)
}

func TestMemberLogin(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))
			w := m.newWorld()

			t.Run("a member logs in and sees their own profile", func(t *testing.T) {
				m := m.at(t)
				s := m.login(w.member.Phone)
				if s.MemberID != w.member.ID || s.NewMember || !strings.HasPrefix(s.Token, "pd_ses_live_") || len(s.Token) < 50 {
					t.Fatalf("session %+v", s)
				}
				if !s.ExpiresAt.After(m.clock.Now().Add(29 * 24 * time.Hour)) {
					t.Errorf("session expires at %v", s.ExpiresAt)
				}
				p := want[member.Profile](t, m.get("/v1/me", s.Token), http.StatusOK)
				if p.ID != w.member.ID || p.Phone != w.member.Phone || p.CardNumber != w.member.CardNumber || p.Name != "Ada" {
					t.Errorf("profile %+v, member %+v", p, w.member)
				}
			})

			t.Run("a phone that is no member's signs up at login", func(t *testing.T) {
				m := m.at(t)
				s := m.login("+15559990001")
				if !s.NewMember || s.MemberID == "" || s.MemberID == w.member.ID {
					t.Fatalf("session %+v", s)
				}
				p := want[member.Profile](t, m.get("/v1/me", s.Token), http.StatusOK)
				if p.Phone != "+15559990001" || !ledger.ValidCardNumber(p.CardNumber) || p.Status != "active" {
					t.Errorf("new member %+v", p)
				}
				again := m.login("+15559990001")
				if again.NewMember || again.MemberID != s.MemberID {
					t.Errorf("second login %+v, first %+v", again, s)
				}
			})

			t.Run("a code works once", func(t *testing.T) {
				m := m.at(t)
				n := m.inbox.count(w.member.Phone) + 1
				want[otpResponse](t, m.askCode(w.member.Phone, nil), http.StatusAccepted)
				code := m.inbox.last(t, w.member.Phone, n)
				want[sessionResponse](t, m.tryLogin(w.member.Phone, code), http.StatusCreated)
				problem(t, m.tryLogin(w.member.Phone, code), http.StatusUnauthorized, member.CodeInvalidCode, "code")
			})

			t.Run("a code expires", func(t *testing.T) {
				m := m.at(t)
				phone := "+15559990002"
				want[otpResponse](t, m.askCode(phone, nil), http.StatusAccepted)
				code := m.inbox.last(t, phone, 1)
				m.clock.advance(5*time.Minute + time.Second)
				problem(t, m.tryLogin(phone, code), http.StatusUnauthorized, member.CodeInvalidCode, "code")
			})

			t.Run("guessing is stopped after five wrong codes, even before the right one", func(t *testing.T) {
				m := m.at(t)
				phone := "+15559990003"
				want[otpResponse](t, m.askCode(phone, nil), http.StatusAccepted)
				code := m.inbox.last(t, phone, 1)
				for i := range 5 {
					g := fmt.Sprintf("%06d", i)
					if g == code {
						g = "999999"
					}
					problem(t, m.tryLogin(phone, g), http.StatusUnauthorized, member.CodeInvalidCode, "code")
				}
				problem(t, m.tryLogin(phone, code), http.StatusUnauthorized, member.CodeInvalidCode, "code")
				// A new code works again.
				want[otpResponse](t, m.askCode(phone, nil), http.StatusAccepted)
				want[sessionResponse](t, m.tryLogin(phone, m.inbox.last(t, phone, 2)), http.StatusCreated)
			})

			t.Run("codes per phone are limited", func(t *testing.T) {
				m := m.at(t)
				phone := "+15559990004"
				for range 5 {
					want[otpResponse](t, m.askCode(phone, nil), http.StatusAccepted)
				}
				r := m.askCode(phone, nil)
				problem(t, r, http.StatusTooManyRequests, member.CodeRateLimited, "-")
				if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
					t.Errorf("Retry-After %q", ra)
				}
				if strings.Contains(string(r.body), "5559990004") {
					t.Errorf("the refusal shows the phone number: %s", r.body)
				}
				// Another phone from the same address is not affected.
				want[otpResponse](t, m.askCode("+15559990005", nil), http.StatusAccepted)
				// An hour later the phone may ask again.
				m.clock.advance(time.Hour + time.Second)
				want[otpResponse](t, m.askCode(phone, nil), http.StatusAccepted)
			})
		})
	}
}

func TestMemberLoginLimitsPerAddress(t *testing.T) {
	m := newMemberSide(t, func(c *member.Config) { c.IPRequests = 3 })
	app := m.makeKey(auth.Key{Role: auth.RoleApp, Name: "member app backend"}, auth.ModeLive)
	for i := range 3 {
		want[otpResponse](t, m.askCode(fmt.Sprintf("+1555888000%d", i), nil), http.StatusAccepted)
	}
	r := m.askCode("+15558880009", nil)
	problem(t, r, http.StatusTooManyRequests, member.CodeRateLimited, "-")
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	// Login attempts from the address have a budget of their own.
	for i := range 3 {
		problem(t, m.tryLogin(fmt.Sprintf("+1555888000%d", i), "000000"), http.StatusUnauthorized, member.CodeInvalidCode, "code")
	}
	problem(t, m.tryLogin("+15558880000", "000000"), http.StatusTooManyRequests, member.CodeRateLimited, "-")

	// A member app's backend names its users' addresses with its app key:
	// each has its own budget, and the header counts for nothing without
	// the key.
	viaApp := func(ip string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + app, headerClientIP: ip}
	}
	want[otpResponse](t, m.askCode("+15558880010", viaApp("203.0.113.7")), http.StatusAccepted)
	want[otpResponse](t, m.askCode("+15558880011", viaApp("203.0.113.8")), http.StatusAccepted)
	problem(t, m.askCode("+15558880012", map[string]string{headerClientIP: "203.0.113.9"}), http.StatusTooManyRequests, member.CodeRateLimited, "-")
	// Any other key is refused, not ignored.
	problem(t, m.askCode("+15558880013", map[string]string{"Authorization": "Bearer " + m.admin}), http.StatusForbidden, ledger.CodeForbidden, "-")
}

func TestMemberLoginDoesNotRevealMembers(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	nobody := "+15557770000"
	shape := func(r reply) string {
		var v map[string]any
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		delete(v, "expires_at")
		delete(v, "request_id")
		b, _ := json.Marshal(v)
		return fmt.Sprintf("%d %s %s", r.status, r.header.Get("Content-Type"), b)
	}
	a, b := m.askCode(w.member.Phone, nil), m.askCode(nobody, nil)
	if shape(a) != shape(b) {
		t.Errorf("asking for a code answers a member\n%s\nand a stranger\n%s", shape(a), shape(b))
	}
	a, b = m.tryLogin(w.member.Phone, "000001"), m.tryLogin(nobody, "000001")
	if shape(a) != shape(b) || a.status != http.StatusUnauthorized {
		t.Errorf("a wrong code answers a member\n%s\nand a stranger\n%s", shape(a), shape(b))
	}
	a, b = m.tryLogin("+15557770001", "000001"), m.tryLogin(nobody, "000001") // no code asked at all
	if shape(a) != shape(b) {
		t.Errorf("a phone without a code answers\n%s\nand one with\n%s", shape(a), shape(b))
	}
}

func TestMemberSessionRevoked(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	s := m.login(w.member.Phone)
	other := m.login(w.member.Phone)
	want[member.Profile](t, m.get("/v1/me", s.Token), http.StatusOK) // cached now
	r := m.do(req{method: http.MethodDelete, path: "/v1/auth/sessions/current", key: s.Token})
	if out := want[map[string]string](t, r, http.StatusOK); out["status"] != "logged_out" {
		t.Fatalf("logout: %s", r)
	}
	problem(t, m.get("/v1/me", s.Token), http.StatusUnauthorized, codeUnauthorized, "-")
	// The member's other session goes on.
	want[member.Profile](t, m.get("/v1/me", other.Token), http.StatusOK)

	t.Run("a session expires", func(t *testing.T) {
		m := m.at(t)
		m.clock.advance(30*24*time.Hour + time.Second)
		problem(t, m.get("/v1/me", other.Token), http.StatusUnauthorized, codeUnauthorized, "-")
	})
}

func TestMemberSessionModes(t *testing.T) {
	m := newMemberSide(t, nil, withMode(auth.ModeTest))
	w := m.newWorld()
	s := m.login(w.member.Phone)
	if !strings.HasPrefix(s.Token, "pd_ses_test_") {
		t.Fatalf("a test server's session token %q", s.Token)
	}
	want[member.Profile](t, m.get("/v1/me", s.Token), http.StatusOK)
	// The same token claiming the other mode, as a session of a live
	// server would arrive at this test server.
	live := "pd_ses_live_" + strings.TrimPrefix(s.Token, "pd_ses_test_")
	p := problem(t, m.get("/v1/me", live), http.StatusUnauthorized, codeKeyModeMismatch, "-")
	if !strings.Contains(p.Detail, "live session token; this server is test") {
		t.Errorf("detail %q", p.Detail)
	}
	// A session token is never taken for an API key, nor the reverse.
	if _, ok := auth.ParseMode(s.Token); ok {
		t.Error("a session token parses as an API key")
	}
	if _, ok := member.ParseSessionMode(m.admin); ok {
		t.Error("an API key parses as a session token")
	}
}

// TestMemberRoutesRoles is the table of who may call the /v1/me endpoints
// and the member-side login endpoints, and what a member session may not
// call elsewhere.
func TestMemberRoutesRoles(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	keys := map[string]string{
		"admin":  m.admin,
		"viewer": m.makeKey(auth.Key{Role: auth.RoleViewer, Name: "viewer"}, auth.ModeLive),
		"pos":    w.posA,
		"app":    m.makeKey(auth.Key{Role: auth.RoleApp, Name: "app"}, auth.ModeLive),
		"none":   "",
	}
	sess := m.login(w.member.Phone)
	other := m.login("+15556660001")
	m.earn(w.posA, w.storeA, w.member.ID, 10_000)

	type call struct {
		method, path string
		body         any
	}
	me := []call{
		{http.MethodGet, "/v1/me", nil},
		{http.MethodPatch, "/v1/me", map[string]any{"marketing_consent": true}},
		{http.MethodGet, "/v1/me/balance", nil},
		{http.MethodGet, "/v1/me/transactions", nil},
		{http.MethodGet, "/v1/me/code", nil},
		{http.MethodGet, "/v1/me/code.svg", nil},
		{http.MethodDelete, "/v1/auth/sessions/current", nil},
		{http.MethodDelete, "/v1/me", nil},
	}
	for _, c := range me {
		for role, key := range keys {
			t.Run(c.method+" "+c.path+" refuses "+role, func(t *testing.T) {
				h := m.harness.at(t)
				r := h.do(req{method: c.method, path: c.path, key: key, body: c.body})
				if role == "none" {
					problem(t, r, http.StatusUnauthorized, codeUnauthorized, "-")
				} else {
					problem(t, r, http.StatusForbidden, ledger.CodeForbidden, "-")
				}
			})
		}
	}

	// A member session only ever means its own member.
	t.Run("a session sees its own member", func(t *testing.T) {
		h := m.harness.at(t)
		p := want[member.Profile](t, h.get("/v1/me", other.Token), http.StatusOK)
		if p.ID != other.MemberID || p.ID == w.member.ID {
			t.Errorf("the other session sees %s", p.ID)
		}
		b := want[myBalance](t, h.get("/v1/me/balance", other.Token), http.StatusOK)
		if b.MemberID != other.MemberID || b.Balance.Balance != 0 {
			t.Errorf("the other session's balance %+v", b)
		}
		hist := want[page[ledger.Transaction]](t, h.get("/v1/me/transactions", other.Token), http.StatusOK)
		if len(hist.Items) != 0 {
			t.Errorf("the other session sees transactions %+v", hist.Items)
		}
		hist = want[page[ledger.Transaction]](t, h.get("/v1/me/transactions", sess.Token), http.StatusOK)
		if len(hist.Items) != 1 || hist.Items[0].MemberID != w.member.ID {
			t.Errorf("own history %+v", hist.Items)
		}
	})

	// Elsewhere a member session is refused, even for its own member.
	for _, c := range []call{
		{http.MethodGet, "/v1/members/" + w.member.ID, nil},
		{http.MethodGet, "/v1/members/" + w.member.ID + "/balance", nil},
		{http.MethodGet, "/v1/members/" + w.member.ID + "/transactions", nil},
		{http.MethodGet, "/v1/members?card_number=" + w.member.CardNumber, nil},
		{http.MethodGet, "/v1/transactions/" + ledger.NewID(), nil},
		{http.MethodGet, "/v1/merchants/" + w.merchantA, nil},
		{http.MethodPost, "/v1/earns", map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "R-x", "purchase_amount": 100}},
		{http.MethodPost, "/v1/redemptions", map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": "R-y", "points": 1}},
		{http.MethodPost, "/v1/adjustments", map[string]any{"member_id": w.member.ID, "points": 1000, "reason": "gift"}},
		{http.MethodPost, "/v1/keys", map[string]any{"role": "admin"}},
		{http.MethodPost, "/v1/members", map[string]any{"phone": "+15551112222", "name": "X"}},
	} {
		t.Run("a member session may not "+c.method+" "+c.path, func(t *testing.T) {
			h := m.harness.at(t)
			r := h.do(req{method: c.method, path: c.path, key: sess.Token, idem: h.idem(), body: c.body})
			problem(t, r, http.StatusForbidden, ledger.CodeForbidden, "-")
		})
	}
}

func TestMeProfileBalanceHistory(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	short := want[ledger.Merchant](t, m.post("/v1/merchants", m.admin, m.idem(),
		map[string]any{"name": "Short-lived points", "earn_rate_bp": 1000, "point_validity_days": 10}), http.StatusCreated)
	shortStore := m.createStore(short.ID, "kiosk")
	s := m.login(w.member.Phone)

	long := m.earn(w.posA, w.storeA, w.member.ID, 100_000) // 1500 points, a year
	soon := m.earn(h2key(m, short.ID), shortStore.ID, w.member.ID, 5_000)
	want[opResponse](t, m.post("/v1/redemptions", w.posA, m.idem(), map[string]any{
		"member_id": w.member.ID, "store_id": w.storeA, "receipt": m.receipt(), "points": 100}), http.StatusCreated)

	t.Run("balance shows what expires within 30 days", func(t *testing.T) {
		m := m.at(t)
		b := want[myBalance](t, m.get("/v1/me/balance", s.Token), http.StatusOK)
		total := long.Points + soon.Points - 100
		if b.Balance.Balance != total || b.Available != total || b.Held != 0 || b.MemberID != w.member.ID {
			t.Errorf("balance %+v, want %d", b, total)
		}
		// The redeem consumed the soonest lot first.
		if want := soon.Points - 100; b.ExpiringPoints != want || len(b.ExpiringLots) != 1 || b.ExpiringLots[0].Points != want {
			t.Errorf("expiring %+v, want %d", b, want)
		}
	})

	t.Run("history filters by type and date and pages newest first", func(t *testing.T) {
		m := m.at(t)
		all := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions", s.Token), http.StatusOK)
		if len(all.Items) != 3 || all.Items[0].Type != ledger.TxRedeem || all.Items[2].ID != long.ID {
			t.Fatalf("history %+v", all.Items)
		}
		earns := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions?type=earn", s.Token), http.StatusOK)
		if len(earns.Items) != 2 || earns.Items[0].ID != soon.ID || earns.Items[1].ID != long.ID {
			t.Errorf("earns %+v", earns.Items)
		}
		both := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions?type=earn,redeem&limit=2", s.Token), http.StatusOK)
		if len(both.Items) != 2 || both.NextCursor == "" {
			t.Fatalf("first page %+v", both)
		}
		rest := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions?type=earn,redeem&limit=2&cursor="+both.NextCursor, s.Token), http.StatusOK)
		if len(rest.Items) != 1 || rest.Items[0].ID != long.ID || rest.NextCursor != "" {
			t.Errorf("second page %+v", rest)
		}
		today := m.clock.Now().Format(time.DateOnly)
		tomorrow := m.clock.Now().AddDate(0, 0, 1).Format(time.DateOnly)
		if p := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions?from="+today+"&to="+today, s.Token), http.StatusOK); len(p.Items) != 3 {
			t.Errorf("today's history has %d items", len(p.Items))
		}
		if p := want[page[ledger.Transaction]](t, m.get("/v1/me/transactions?from="+tomorrow, s.Token), http.StatusOK); len(p.Items) != 0 {
			t.Errorf("tomorrow's history has %d items", len(p.Items))
		}
		for q, field := range map[string]string{
			"type=bogus": "type", "from=yesterday": "from", "to=2026-13-01": "to", "limit=0": "limit", "cursor=xyz": "cursor",
			"member_id=" + w.member.ID: "member_id", "from=" + tomorrow + "&to=" + today: "to",
		} {
			problem(t, m.get("/v1/me/transactions?"+q, s.Token), http.StatusBadRequest, ledger.CodeValidation, field)
		}
	})

	t.Run("the profile's name and consents change", func(t *testing.T) {
		m := m.at(t)
		patch := func(body any) reply {
			return m.do(req{method: http.MethodPatch, path: "/v1/me", key: s.Token, body: body})
		}
		p := want[member.Profile](t, patch(map[string]any{"name": "Ada L.", "marketing_consent": true}), http.StatusOK)
		if p.Name != "Ada L." || !p.MarketingConsent || p.AnalyticsConsent || p.ConsentsUpdatedAt == nil {
			t.Errorf("after patch %+v", p)
		}
		p = want[member.Profile](t, patch(map[string]any{"analytics_consent": true}), http.StatusOK)
		if p.Name != "Ada L." || !p.MarketingConsent || !p.AnalyticsConsent {
			t.Errorf("after second patch %+v", p)
		}
		problem(t, patch(map[string]any{}), http.StatusBadRequest, ledger.CodeValidation, "name")
		problem(t, patch(map[string]any{"name": ""}), http.StatusBadRequest, ledger.CodeValidation, "name")
		problem(t, patch(map[string]any{"phone": "+15550000000"}), http.StatusBadRequest, ledger.CodeValidation, "phone")
		problem(t, patch(map[string]any{"status": "active"}), http.StatusBadRequest, ledger.CodeValidation, "status")
		problem(t, patch(map[string]any{"marketing_consent": "yes"}), http.StatusBadRequest, ledger.CodeValidation, "marketing_consent")
	})
}

// h2key makes a POS key for a merchant.
func h2key(m *memberSide, merchantID string) string { return m.createPOSKey(merchantID, "") }

func TestMemberWithdrawal(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))
			w := m.newWorld()
			s := m.login(w.member.Phone)
			other := m.login(w.member.Phone)
			earned := m.earn(w.posA, w.storeA, w.member.ID, 200_000)
			hold := want[opResponse](t, m.post("/v1/holds", w.posA, m.idem(), map[string]any{
				"member_id": w.member.ID, "store_id": w.storeA, "points": 500}), http.StatusCreated)

			r := want[withdrawResponse](t, m.do(req{method: http.MethodDelete, path: "/v1/me", key: s.Token}), http.StatusOK)
			if r.MemberID != w.member.ID || r.Status != member.StatusWithdrawn || r.FrozenPoints != earned.Points {
				t.Errorf("withdrawal %+v", r)
			}
			// Every session of the member ends.
			problem(t, m.get("/v1/me", s.Token), http.StatusUnauthorized, codeUnauthorized, "-")
			problem(t, m.get("/v1/me", other.Token), http.StatusUnauthorized, codeUnauthorized, "-")
			// Personal data is gone; the card and phone find nobody.
			got := want[ledger.Member](t, m.get("/v1/members/"+w.member.ID, m.admin), http.StatusOK)
			if got.Phone != "" || got.Name != "" || got.Status != member.StatusWithdrawn || got.CardNumber != w.member.CardNumber {
				t.Errorf("withdrawn member %+v", got)
			}
			if p := want[page[ledger.Member]](t, m.get("/v1/members?phone="+url.QueryEscape(w.member.Phone), m.admin), http.StatusOK); len(p.Items) != 0 {
				t.Errorf("the phone still finds %+v", p.Items)
			}
			if p := want[page[ledger.Member]](t, m.get("/v1/members?card_number="+w.member.CardNumber, m.admin), http.StatusOK); len(p.Items) != 0 {
				t.Errorf("the card still finds %+v", p.Items)
			}
			// Points are frozen: nothing new moves them...
			before := m.snap(w.member.ID)
			for path, body := range map[string]map[string]any{
				"/v1/earns":       {"member_id": w.member.ID, "store_id": w.storeA, "receipt": m.receipt(), "purchase_amount": 1000},
				"/v1/redemptions": {"member_id": w.member.ID, "store_id": w.storeA, "receipt": m.receipt(), "points": 1},
				"/v1/holds":       {"member_id": w.member.ID, "store_id": w.storeA, "points": 1},
				"/v1/adjustments": {"member_id": w.member.ID, "points": 10, "reason": "goodwill"},
			} {
				problem(t, m.post(path, m.admin, m.idem(), body), http.StatusNotFound, ledger.CodeMemberNotFound, "-")
			}
			m.unchanged(before, w.member.ID)
			// ...but what was under way finishes: the hold is voided, the
			// purchase refunded.
			want[opResponse](t, m.post("/v1/holds/"+hold.ID+"/void", w.posA, m.idem(), map[string]any{}), http.StatusCreated)
			want[opResponse](t, m.post("/v1/cancellations", w.posA, m.idem(), map[string]any{
				"transaction_id": earned.ID, "purchase_amount": 50_000}), http.StatusCreated)
			// A withdrawal is not done twice; the phone may sign up afresh.
			problem(t, m.do(req{method: http.MethodDelete, path: "/v1/me", key: s.Token}), http.StatusUnauthorized, codeUnauthorized, "-")
			fresh := m.login(w.member.Phone)
			if !fresh.NewMember || fresh.MemberID == w.member.ID {
				t.Errorf("signing up again: %+v", fresh)
			}
			// The books stay sound (the harness audits again at the end).
			rep, err := ledger.Verify(m.ctx, m.store.Audit())
			if err != nil || !rep.Sound() {
				t.Fatalf("verify after withdrawal: %+v, %v", rep, err)
			}
			// The expiry run still drains the frozen points on their dates.
			m.clock.advance(2 * 366 * 24 * time.Hour)
			st, err := ledger.ExpireDue(m.ctx, m.store, m.writer, m.clock.Now())
			if err != nil || st.LotMembers == 0 {
				t.Fatalf("expiry after withdrawal: %+v, %v", st, err)
			}
			if bal := m.balance(w.member.ID); bal.Balance != 0 {
				t.Errorf("after expiry the withdrawn member still has %+v", bal)
			}
			rep, err = ledger.Verify(m.ctx, m.store.Audit())
			if err != nil || !rep.Sound() {
				t.Fatalf("verify after expiry: %+v, %v", rep, err)
			}
		})
	}
}

// TestPhonesAtRest reads the database itself: no phone number in clear,
// in the SQLite file and its WAL, or in the PostgreSQL rows; and the
// lookup by phone still finds the member.
func TestPhonesAtRest(t *testing.T) {
	phones := []string{"+821098765432", "+15554443322"}
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))
			var ids []string
			for _, p := range phones {
				ids = append(ids, m.createMember(p, "Someone").ID)
			}
			m.login(phones[0])
			want[otpResponse](t, m.askCode(phones[1], nil), http.StatusAccepted)
			for i, p := range phones {
				got := want[page[ledger.Member]](t, m.get("/v1/members?phone="+url.QueryEscape(p), m.admin), http.StatusOK)
				if len(got.Items) != 1 || got.Items[0].ID != ids[i] || got.Items[0].Phone != privacy.Mask(p) {
					t.Errorf("lookup of %s: %+v", p, got.Items)
				}
			}
			var raw []byte
			switch db := m.store.(type) {
			case *sqlite.DB:
				for _, f := range []string{"pointd.db", "pointd.db-wal"} {
					b, err := os.ReadFile(filepath.Join(filepath.Dir(db.Path()), f))
					if err != nil && f == "pointd.db" {
						t.Fatal(err)
					}
					raw = append(raw, b...)
				}
				if len(raw) < 4096 {
					t.Fatalf("read only %d bytes of the database", len(raw))
				}
			default:
				conn, err := pgx.Connect(m.ctx, m.dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(m.ctx)
				var dump string
				err = conn.QueryRow(m.ctx, `SELECT concat(
					(SELECT string_agg(m::text, '|') FROM members m),
					(SELECT string_agg(o::text, '|') FROM member_otps o),
					(SELECT string_agg(s::text, '|') FROM member_sessions s))`).Scan(&dump)
				if err != nil || !strings.Contains(dump, ids[0]) {
					t.Fatalf("dump: %v (%d bytes)", err, len(dump))
				}
				raw = []byte(dump)
			}
			for _, p := range phones {
				digits := strings.TrimPrefix(p, "+")
				if bytes.Contains(raw, []byte(digits)) || bytes.Contains(raw, []byte(digits[len(digits)-8:])) {
					t.Errorf("%s is readable in the database", p)
				}
			}
		})
	}
}

func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		remote, header string
		app            bool
		want           string
	}{
		{"192.0.2.1:5555", "", false, "192.0.2.1"},
		{"192.0.2.1:5555", "203.0.113.9", false, "192.0.2.1"}, // the header needs an app key
		{"192.0.2.1:5555", "203.0.113.9", true, "203.0.113.9"},
		{"192.0.2.1:5555", "not an address", true, "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:5555", "", false, "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.7]:5555", "", false, "192.0.2.7"},
		{"192.0.2.1:5555", "2001:db8:aa:bb::1", true, "2001:db8:aa:bb::/64"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/v1/auth/otp", nil)
		r.RemoteAddr = tc.remote
		if tc.header != "" {
			r.Header.Set(headerClientIP, tc.header)
		}
		if tc.app {
			r = r.WithContext(context.WithValue(r.Context(), keyCaller, auth.Key{Role: auth.RoleApp}))
		}
		if got := clientIP(r); got != tc.want {
			t.Errorf("remote %s, header %q, app key %v: %q, want %q", tc.remote, tc.header, tc.app, got, tc.want)
		}
	}
}

// TestSessionModeMismatchCounted: a session token of the other mode is
// counted and labelled like a key of the other mode, so the dashboard that
// shows a dev SDK in production shows a dev app's sessions too.
func TestSessionModeMismatchCounted(t *testing.T) {
	h, _ := metricsServer(t, false, nil, ledger.WriterConfig{})
	m := &memberSide{harness: h, clock: &clock{t: time.Now().UTC()}, inbox: newInbox()}
	ms := h.store.(member.Store)
	m.svc = member.NewService(member.Config{Mode: auth.ModeLive, Sender: m.inbox, Now: m.clock.Now, IPRequests: 1000}, ms, h.store)
	h.api.UseMembers(m.svc, ms)
	w := h.newWorld()
	s := m.login(w.member.Phone)
	foreign := "pd_ses_test_" + strings.TrimPrefix(s.Token, "pd_ses_live_")
	for range 2 {
		problem(t, h.get("/v1/me", foreign), http.StatusUnauthorized, codeKeyModeMismatch, "-")
	}
	want[member.Profile](t, h.get("/v1/me", s.Token), http.StatusOK)
	mfs := h.scrapeMetrics("")
	wantMetric(t, mfs, "pointd_key_mode_mismatch_total", map[string]string{"key_mode": "test"}, 2)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "GET /v1/me", "status": "401", "key_mode": "test"}, 2)
	wantMetric(t, mfs, "pointd_http_requests_total", map[string]string{"route": "GET /v1/me", "status": "200", "key_mode": "live"}, 1)
}

// Twenty requests for one number at once get exactly the five codes an
// hour that the per-phone limit allows.
func TestPhoneLimitHoldsUnderConcurrentRequests(t *testing.T) {
	m := newMemberSide(t, nil)
	const phone = "+15557770001"
	var wg sync.WaitGroup
	var sent, limited atomic.Int64
	for range 20 {
		wg.Go(func() {
			switch r := m.askCode(phone, nil); r.status {
			case http.StatusAccepted:
				sent.Add(1)
			case http.StatusTooManyRequests:
				limited.Add(1)
			default:
				t.Errorf("unexpected answer %s", r)
			}
		})
	}
	wg.Wait()
	if sent.Load() != 5 || limited.Load() != 15 {
		t.Errorf("%d codes sent and %d refused; want 5 and 15", sent.Load(), limited.Load())
	}
}
