package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// One phone number is one member however it is written: every number that
// enters (member creation, lookups, login codes) is read into E.164.
func TestPhoneSpellingsAreOneMember(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			m := newMemberSide(t, nil, withBackend(b))

			t.Run("three spellings of one number make one member", func(t *testing.T) {
				h := m.at(t)
				first := h.createMember("821012345678", "Ada")
				for _, p := range []string{"010-1234-5678", "+82 10 1234 5678", "+82 (0)10-1234-5678"} {
					problem(t, h.post("/v1/members", h.admin, h.idem(), map[string]any{"phone": p, "name": "Ada"}),
						http.StatusConflict, ledger.CodeConflict, "phone")
				}
				for _, q := range []string{"%2B821012345678", "010-1234-5678", "01012345678", "%2B82%2010%201234%205678",
					"+821012345678", // an unencoded +, which the query string turns into a space
				} {
					got := want[page[ledger.Member]](t, h.get("/v1/members?phone="+q, h.admin), http.StatusOK)
					if len(got.Items) != 1 || got.Items[0].ID != first.ID {
						t.Errorf("lookup phone=%s found %+v; want only %s", q, got.Items, first.ID)
					}
				}
			})

			t.Run("a space where a + was meant is read as the +, or refused saying to send %2B", func(t *testing.T) {
				h := m.at(t)
				us := h.createMember("+1 201-555-0123", "Bo")
				got := want[page[ledger.Member]](t, h.get("/v1/members?phone=+12015550123", h.admin), http.StatusOK)
				if len(got.Items) != 1 || got.Items[0].ID != us.ID {
					t.Errorf("lookup phone=+12015550123 (unencoded) found %+v; want %s", got.Items, us.ID)
				}
				p := problem(t, h.get("/v1/members?phone=+999123", h.admin), http.StatusBadRequest, ledger.CodeValidation, "phone")
				if !strings.Contains(p.Detail, "%2B") {
					t.Errorf("the refusal does not say how to send a +: %q", p.Detail)
				}
			})

			t.Run("what is no number of the region is refused naming the field and the expected form", func(t *testing.T) {
				h := m.at(t)
				for _, p := range []string{"010-1234", "12345", "+82 10 1234 56789", "call me", "010-1234-5678 ext. 9"} {
					r := problem(t, h.post("/v1/members", h.admin, h.idem(), map[string]any{"phone": p, "name": "N"}),
						http.StatusBadRequest, ledger.CodeValidation, "phone")
					if !strings.Contains(r.Detail, "KR") && !strings.Contains(r.Detail, "extension") {
						t.Errorf("phone %q refused with %q: it does not say what is expected", p, r.Detail)
					}
					problem(t, h.askCode(p, nil), http.StatusBadRequest, ledger.CodeValidation, "phone")
					problem(t, h.get("/v1/members?phone="+strings.ReplaceAll(p, " ", "%20"), h.admin),
						http.StatusBadRequest, ledger.CodeValidation, "phone")
				}
			})

			t.Run("login codes count against one number however it is written, and log in whichever spelling", func(t *testing.T) {
				h := m.at(t)
				spellings := []string{"010-2222-3333", "+821022223333", "821022223333", "+82 10 2222 3333", "01022223333"}
				for _, p := range spellings { // the limit is 5 an hour
					want[otpResponse](t, h.askCode(p, nil), http.StatusAccepted)
				}
				problem(t, h.askCode("(010) 2222-3333", nil), http.StatusTooManyRequests, member.CodeRateLimited, "-")
				code := h.inbox.last(t, "+821022223333", 5)
				s := want[sessionResponse](t, h.tryLogin("+82 10-2222-3333", code), http.StatusCreated)
				if !s.NewMember {
					t.Fatalf("first login %+v; want a new member", s)
				}
				p := want[member.Profile](t, h.get("/v1/me", s.Token), http.StatusOK)
				if p.Phone != "+821022223333" {
					t.Errorf("signed up with phone %q; want it in E.164", p.Phone)
				}
				got := want[page[ledger.Member]](t, h.get("/v1/members?phone=010-2222-3333", h.admin), http.StatusOK)
				if len(got.Items) != 1 || got.Items[0].ID != s.MemberID {
					t.Errorf("the signed-up member is not found by another spelling: %+v", got.Items)
				}
			})
		})
	}
}
