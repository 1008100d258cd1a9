package api

import (
	"encoding/xml"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// Member codes at the till, on the real handlers and stores; the member
// service's clock (also the writer's) is the test's, so steps are moved
// through, never slept through.

// toStep moves the clock to 1 s into the next 30 s step.
func (m *memberSide) toStep() {
	now := m.clock.Now()
	m.clock.advance(now.Truncate(member.MemberCodeStep).Add(member.MemberCodeStep + time.Second).Sub(now))
}

func (m *memberSide) myCode(token string) member.IssuedCode {
	m.t.Helper()
	return want[member.IssuedCode](m.t, m.get("/v1/me/code", token), http.StatusOK)
}

// spend posts a redemption (or hold, or earn) naming the member by code.
func (m *memberSide) withCode(path, key, store, code string) reply {
	m.t.Helper()
	body := map[string]any{"member_code": code, "store_id": store}
	switch path {
	case "/v1/earns":
		body["receipt"], body["purchase_amount"] = m.receipt(), 10_000
	case "/v1/redemptions":
		body["receipt"], body["points"] = m.receipt(), 10
	default:
		body["points"] = 10
	}
	return m.post(path, key, m.idem(), body)
}

// wrongCode is a well-formed code (right check digit) with another
// one-time part.
func wrongCode(code string) string {
	body := []byte(code[:19])
	body[12] = '0' + (body[12]-'0'+1)%10
	return string(body) + strconv.Itoa(ledger.LuhnDigit(string(body)))
}

func TestMemberCodeWindowAndMember(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))
			w := m.newWorld()
			m.toStep()
			ada, bob := m.login("+15550100001"), m.login("+15550100002")
			c := m.myCode(ada.Token)
			if len(c.Code) != member.MemberCodeLength || c.Code == m.myCode(bob.Token).Code {
				t.Fatalf("codes %q and bob's", c.Code)
			}
			if again := m.myCode(ada.Token); again.Code != c.Code {
				t.Errorf("same step, another code: %q, %q", c.Code, again.Code)
			}
			step := m.clock.Now().Truncate(member.MemberCodeStep)
			if !c.RefreshAt.Equal(step.Add(member.MemberCodeStep)) || !c.ExpiresAt.Equal(step.Add(2*member.MemberCodeStep)) {
				t.Errorf("refresh %v expires %v, step %v", c.RefreshAt, c.ExpiresAt, step)
			}
			first := m.post("/v1/earns", w.posA, "code-earn", map[string]any{"member_code": c.Code, "store_id": w.storeA,
				"receipt": "R-code", "purchase_amount": 10_000})
			if got := want[opResponse](t, first, http.StatusCreated); got.MemberID != ada.MemberID {
				t.Fatalf("the code found member %s, want %s", got.MemberID, ada.MemberID)
			}
			bc := m.myCode(bob.Token).Code
			if got := want[opResponse](t, m.withCode("/v1/earns", w.posA, w.storeA, bc), http.StatusCreated); got.MemberID != bob.MemberID {
				t.Errorf("bob's code found %s", got.MemberID)
			}
			problem(t, m.post("/v1/earns", w.posA, m.idem(), map[string]any{"member_code": c.Code, "member_id": ada.MemberID,
				"store_id": w.storeA, "receipt": m.receipt(), "purchase_amount": 1}), http.StatusBadRequest, ledger.CodeValidation, "member_code")
			problem(t, m.withCode("/v1/earns", w.posA, w.storeA, c.Code[:19]+strconv.Itoa((int(c.Code[19]-'0')+1)%10)),
				http.StatusUnprocessableEntity, member.CodeMemberCodeInvalid, "member_code")
			problem(t, m.withCode("/v1/earns", w.posA, w.storeA, wrongCode(c.Code)), http.StatusUnprocessableEntity, member.CodeMemberCodeInvalid, "member_code")

			// The previous step: still accepted, to its last moment.
			m.clock.advance(58 * time.Second)
			want[opResponse](t, m.withCode("/v1/earns", w.posA, w.storeA, c.Code), http.StatusCreated)
			m.clock.advance(time.Second) // expires_at
			problem(t, m.withCode("/v1/earns", w.posA, w.storeA, c.Code), http.StatusUnprocessableEntity, member.CodeMemberCodeExpired, "member_code")
			// A retry of what was done with it replays, expired or not.
			again := m.post("/v1/earns", w.posA, "code-earn", map[string]any{"member_code": c.Code, "store_id": w.storeA,
				"receipt": "R-code", "purchase_amount": 10_000})
			if again.status != http.StatusCreated || again.header.Get(headerReplayed) != "true" || string(again.body) != string(first.body) {
				t.Errorf("the retry answered %s", again)
			}
		})
	}
}

func TestMemberCodeUsedAtAnotherMerchant(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))
			w := m.newWorld()
			m.toStep()
			ada := m.login("+15550100003")
			m.earn(w.posA, w.storeA, ada.MemberID, 100_000)
			c := m.myCode(ada.Token).Code
			want[opResponse](t, m.withCode("/v1/redemptions", w.posA, w.storeA, c), http.StatusCreated)
			want[opResponse](t, m.withCode("/v1/redemptions", w.posA, w.storeA, c), http.StatusCreated) // the same merchant
			problem(t, m.withCode("/v1/redemptions", w.posB, w.storeB, c), http.StatusUnprocessableEntity, member.CodeMemberCodeUsed, "member_code")
			problem(t, m.withCode("/v1/holds", w.posB, w.storeB, c), http.StatusUnprocessableEntity, member.CodeMemberCodeUsed, "member_code")
			want[opResponse](t, m.withCode("/v1/earns", w.posB, w.storeB, c), http.StatusCreated) // earns may reuse it
			m.clock.advance(member.MemberCodeStep)
			want[opResponse](t, m.withCode("/v1/redemptions", w.posB, w.storeB, m.myCode(ada.Token).Code), http.StatusCreated)
		})
	}
}

func TestRequireMemberCode(t *testing.T) {
	m := newMemberSide(t, nil)
	w := m.newWorld()
	m.toStep()
	ada := m.login("+15550100004")
	m.earn(w.posA, w.storeA, ada.MemberID, 100_000)
	patch := func(body any) reply {
		return m.do(req{method: http.MethodPatch, path: "/v1/merchants/" + w.merchantA, key: m.admin, body: body})
	}
	problem(t, patch(map[string]any{"require_member_code": "yes"}), http.StatusBadRequest, ledger.CodeValidation, "-")
	if got := want[ledger.Merchant](t, patch(map[string]any{"require_member_code": true}), http.StatusOK); !got.RequireMemberCode {
		t.Fatalf("after the PATCH: %+v", got)
	}
	card := want[ledger.Member](t, m.get("/v1/members/"+ada.MemberID, m.admin), http.StatusOK).CardNumber
	for _, who := range []map[string]any{{"member_id": ada.MemberID}, {"card_number": card}} {
		r := map[string]any{"store_id": w.storeA, "receipt": m.receipt(), "points": 10}
		hd := map[string]any{"store_id": w.storeA, "points": 10}
		for k, v := range who {
			r[k], hd[k] = v, v
		}
		problem(t, m.post("/v1/redemptions", w.posA, m.idem(), r), http.StatusUnprocessableEntity, member.CodeMemberCodeRequired, "member_code")
		problem(t, m.post("/v1/holds", w.posA, m.idem(), hd), http.StatusUnprocessableEntity, member.CodeMemberCodeRequired, "member_code")
	}
	m.earn(w.posA, w.storeA, ada.MemberID, 1_000) // earns still take a member id
	c := m.myCode(ada.Token).Code
	want[opResponse](t, m.withCode("/v1/redemptions", w.posA, w.storeA, c), http.StatusCreated)
	h := want[opResponse](t, m.withCode("/v1/holds", w.posA, w.storeA, c), http.StatusCreated)
	want[opResponse](t, m.post("/v1/holds/"+h.Hold.ID+"/capture", w.posA, m.idem(), map[string]any{}), http.StatusCreated)
	// Merchant B is not affected.
	m.earn(w.posB, w.storeB, ada.MemberID, 10_000)
	want[opResponse](t, m.post("/v1/redemptions", w.posB, m.idem(), map[string]any{"member_id": ada.MemberID,
		"store_id": w.storeB, "receipt": m.receipt(), "points": 5}), http.StatusCreated)
	want[ledger.Merchant](t, patch(map[string]any{"require_member_code": false}), http.StatusOK)
	want[opResponse](t, m.post("/v1/redemptions", w.posA, m.idem(), map[string]any{"member_id": ada.MemberID,
		"store_id": w.storeA, "receipt": m.receipt(), "points": 5}), http.StatusCreated)
}

func TestMemberCodeGuessingLimit(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, func(c *member.Config) { c.CodeAttempts, c.CodeWindow = 3, 10*time.Minute }, withBackend(b))
			w := m.newWorld()
			m.toStep()
			ada, bob := m.login("+15550100005"), m.login("+15550100006")
			c := m.myCode(ada.Token).Code
			// A right code gives its attempt back; a misread is no guess.
			for range 5 {
				want[opResponse](t, m.withCode("/v1/earns", w.posA, w.storeA, c), http.StatusCreated)
				problem(t, m.withCode("/v1/earns", w.posA, w.storeA, c[:19]+strconv.Itoa((int(c[19]-'0')+1)%10)),
					http.StatusUnprocessableEntity, member.CodeMemberCodeInvalid, "member_code")
			}
			// Per key: three wrong codes, then even the right one is refused.
			bc := m.myCode(bob.Token).Code
			for range 3 {
				problem(t, m.withCode("/v1/earns", w.posA, w.storeA, wrongCode(bc)), http.StatusUnprocessableEntity, member.CodeMemberCodeInvalid, "member_code")
			}
			r := m.withCode("/v1/earns", w.posA, w.storeA, c)
			problem(t, r, http.StatusTooManyRequests, member.CodeRateLimited, "-")
			if r.header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			// Per member: bob had three wrong codes; another key is refused bob's right code, not ada's.
			posA2 := m.createPOSKey(w.merchantA, "")
			problem(t, m.withCode("/v1/earns", posA2, w.storeA, bc), http.StatusTooManyRequests, member.CodeRateLimited, "-")
			want[opResponse](t, m.withCode("/v1/earns", posA2, w.storeA, c), http.StatusCreated)
			// The window ends.
			m.clock.advance(10 * time.Minute)
			c, bc = m.myCode(ada.Token).Code, m.myCode(bob.Token).Code
			want[opResponse](t, m.withCode("/v1/earns", w.posA, w.storeA, c), http.StatusCreated)
			want[opResponse](t, m.withCode("/v1/earns", posA2, w.storeA, bc), http.StatusCreated)
		})
	}
}

func TestMemberCodeSVG(t *testing.T) {
	m := newMemberSide(t, nil)
	m.toStep()
	ada := m.login("+15550100007")
	code := m.myCode(ada.Token)
	for _, q := range []string{"", "?format=qr", "?format=code128"} {
		r := m.get("/v1/me/code.svg"+q, ada.Token)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "image/svg+xml" || r.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %d %q %q", q, r.status, r.header.Get("Content-Type"), r.header.Get("Cache-Control"))
		}
		if e, err := http.ParseTime(r.header.Get("Expires")); err != nil || !e.Equal(code.ExpiresAt) {
			t.Errorf("%s: Expires %q, the code expires %v", q, r.header.Get("Expires"), code.ExpiresAt)
		}
		var doc struct {
			XMLName xml.Name
			ViewBox string `xml:"viewBox,attr"`
			Paths   []struct {
				D string `xml:"d,attr"`
			} `xml:"path"`
			Text string `xml:"text"`
		}
		if err := xml.Unmarshal(r.body, &doc); err != nil {
			t.Fatalf("%s: not XML: %v\n%s", q, err, r.body)
		}
		if doc.XMLName.Space != "http://www.w3.org/2000/svg" || doc.XMLName.Local != "svg" || len(strings.Fields(doc.ViewBox)) != 4 ||
			len(doc.Paths) != 1 || len(doc.Paths[0].D) < 100 {
			t.Errorf("%s: not an SVG drawing: %s", q, r.body)
		}
		if strings.Contains(q, "code128") != (doc.Text == code.Code) {
			t.Errorf("%s: text %q, code %q", q, doc.Text, code.Code)
		}
	}
	problem(t, m.get("/v1/me/code.svg?format=png", ada.Token), http.StatusBadRequest, ledger.CodeValidation, "format")
	problem(t, m.get("/v1/me/code.svg?size=2", ada.Token), http.StatusBadRequest, ledger.CodeValidation, "size")
}
