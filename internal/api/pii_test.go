package api

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

// TestPersonalDataByRole walks the roles × the member endpoints (the table
// "Roles × endpoints" in docs/api.md) on both stores: no answer to a
// viewer, a pos key or an admin that did not ask to reveal carries the
// whole phone number; a pos key reads no name and nothing of another
// merchant's lots or transactions, its history cursors included; an
// admin's reveal answers the number and is audited.
func TestPersonalDataByRole(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run("on "+string(b), func(t *testing.T) { personalDataByRole(t, newHarness(t, withBackend(b))) })
	}
}

func personalDataByRole(t *testing.T, h *harness) {
	w := h.newWorld()
	m := w.member
	viewer := h.makeAPIKey(map[string]any{"role": "viewer", "name": "back office"}).Key

	// The member shops at both merchants; an operator adjusts.
	mine := map[string][]string{w.posA: {}, w.posB: {}} // transaction ids of each pos key's merchant
	for range 3 {
		mine[w.posA] = append(mine[w.posA], h.earn(w.posA, w.storeA, m.ID, 10_000).ID)
		mine[w.posB] = append(mine[w.posB], h.earn(w.posB, w.storeB, m.ID, 20_000).ID)
	}
	mine[w.posB] = append(mine[w.posB], want[opResponse](t, h.post("/v1/redemptions", w.posB, h.idem(), map[string]any{
		"member_id": m.ID, "store_id": w.storeB, "receipt": h.receipt(), "points": 5}), http.StatusCreated).ID)
	adj := want[opResponse](t, h.post("/v1/adjustments", h.admin, h.idem(), map[string]any{
		"member_id": m.ID, "points": 7, "reason": "goodwill"}), http.StatusCreated)

	digits := strings.TrimPrefix(m.Phone, "+")
	// Whatever shows more than the mask's last four digits shows the number.
	whole := func(body []byte) bool {
		return strings.Contains(string(body), m.Phone) || strings.Contains(string(body), digits[len(digits)-7:])
	}
	foreign := func(key string) []string {
		var out []string
		for k, ids := range mine {
			if k != key {
				out = append(out, ids...)
			}
		}
		return append(out, adj.ID)
	}

	paths := []string{
		"/v1/members/" + m.ID,
		"/v1/members?card_number=" + m.CardNumber,
		"/v1/members?phone=" + url.QueryEscape(m.Phone),
		"/v1/members/" + m.ID + "/balance",
		"/v1/members/" + m.ID + "/lots",
	}
	for _, c := range []struct {
		role, key string
		pos       bool
	}{{"admin", h.admin, false}, {"viewer", viewer, false}, {"pos A", w.posA, true}, {"pos B", w.posB, true}} {
		t.Run(c.role, func(t *testing.T) {
			h := h.at(t)
			read := func(path string) []byte {
				r := h.get(path, c.key)
				if r.status != http.StatusOK {
					t.Fatalf("GET %s: %s", path, r)
				}
				if whole(r.body) {
					t.Errorf("GET %s carries the whole phone number %s: %s", path, m.Phone, r.body)
				}
				if c.pos {
					if strings.Contains(string(r.body), m.Name) || strings.Contains(string(r.body), `"phone"`) {
						t.Errorf("GET %s shows a pos key the name or phone: %s", path, r.body)
					}
					for _, id := range foreign(c.key) {
						if strings.Contains(string(r.body), id) {
							t.Errorf("GET %s shows a pos key transaction %s of another merchant: %s", path, id, r.body)
						}
					}
				}
				return r.body
			}
			for _, p := range paths {
				read(p)
			}
			if !c.pos {
				read("/v1/members?name=" + m.Name)
			}
			// The history, one transaction a page, cursors and all.
			var got []string
			cursor := ""
			for range 20 {
				body := read("/v1/members/" + m.ID + "/transactions?limit=1" + cursor)
				p := want[page[ledger.Transaction]](t, reply{status: http.StatusOK, header: http.Header{"Content-Type": {"application/json"}}, body: body}, http.StatusOK)
				for _, tx := range p.Items {
					got = append(got, tx.ID)
					if shows(p.NextCursor, tx.Seq) {
						t.Errorf("cursor %q shows the seq %d", p.NextCursor, tx.Seq)
					}
				}
				if p.NextCursor == "" {
					break
				}
				cursor = "&cursor=" + p.NextCursor
			}
			if c.pos {
				wantIDs := slices.Clone(mine[c.key])
				slices.Reverse(wantIDs)
				if !slices.Equal(got, wantIDs) {
					t.Errorf("a pos key's history lists %v; want its merchant's %v, newest first", got, wantIDs)
				}
			} else if len(got) != len(mine[w.posA])+len(mine[w.posB])+1 {
				t.Errorf("an operator's history lists %d transactions; want all %d", len(got), len(mine[w.posA])+len(mine[w.posB])+1)
			}
			// Asking for the whole number: an admin's privilege only.
			for _, p := range paths[:3] {
				r := h.get(p+sep(p)+"reveal=phone", c.key)
				if c.role == "admin" {
					if r.status != http.StatusOK || !strings.Contains(string(r.body), `"`+m.Phone+`"`) {
						t.Errorf("an admin's reveal of %s answered %s", p, r)
					}
					continue
				}
				problem(t, r, http.StatusForbidden, ledger.CodeForbidden, "-")
			}
			problem(t, h.get(paths[0]+"?reveal=name", c.key), http.StatusBadRequest, ledger.CodeValidation, "reveal")
		})
	}

	t.Run("a pos key's lots are its merchant's, and the rest one sum", func(t *testing.T) {
		type lots struct {
			Items []struct {
				ID        string `json:"id"`
				Remaining int64  `json:"remaining"`
			} `json:"items"`
			OtherPoints *int64 `json:"other_points"`
		}
		all := want[lots](t, h.get("/v1/members/"+m.ID+"/lots", h.admin), http.StatusOK)
		if all.OtherPoints != nil || len(all.Items) != 7 {
			t.Fatalf("an operator reads lots %+v; want all 7, no other_points", all)
		}
		for _, key := range []string{w.posA, w.posB} {
			p := want[lots](t, h.get("/v1/members/"+m.ID+"/lots", key), http.StatusOK)
			var own, other int64
			for _, l := range all.Items {
				if slices.Contains(mine[key], l.ID) {
					own += l.Remaining
				} else {
					other += l.Remaining
				}
			}
			var listed int64
			for _, l := range p.Items {
				if !slices.Contains(mine[key], l.ID) {
					t.Errorf("a pos key lists lot %s, not its merchant's", l.ID)
				}
				listed += l.Remaining
			}
			if len(p.Items) != 3 || listed != own || p.OtherPoints == nil || *p.OtherPoints != other {
				t.Errorf("a pos key reads %+v; want its 3 lots (%d points) and other_points %d", p, own, other)
			}
		}
	})

	t.Run("a suspension's and a reactivation's answers mask the phone", func(t *testing.T) {
		for _, op := range []string{"suspend", "reactivate"} {
			r := h.post("/v1/members/"+m.ID+"/"+op, h.admin, "", map[string]any{"reason": "checking"})
			got := want[ledger.Member](t, r, http.StatusOK)
			if whole(r.body) || got.Phone != privacy.Mask(m.Phone) {
				t.Errorf("%s answers %s", op, r.body)
			}
		}
	})

	t.Run("each reveal is audited: who, whose, when", func(t *testing.T) {
		var reveals []backoffice.Entry
		for _, e := range h.auditLog("?target=" + m.ID + "&limit=200") {
			if e.Action == backoffice.ActionMemberRevealPhone {
				reveals = append(reveals, e)
			}
		}
		if len(reveals) != 3 { // the admin's three reveals above; the refused ones wrote none
			t.Fatalf("%d reveal entries; want 3", len(reveals))
		}
		for _, e := range reveals {
			if e.TargetType != backoffice.TargetMember || e.TargetID != m.ID || e.ActorKeyID == "" ||
				!strings.HasPrefix(h.admin, e.ActorPrefix) || e.At.IsZero() || whole(e.After) || whole(e.Before) {
				t.Errorf("reveal entry %+v", e)
			}
		}
	})
}

// shows reports whether a cursor carries seq readably: as text, or as
// the 8 bytes of an integer, in the clear or base64url-decoded.
func shows(cursor string, seq int64) bool {
	raw, _ := base64.RawURLEncoding.DecodeString(cursor)
	be := binary.BigEndian.AppendUint64(nil, uint64(seq))
	return bytes.Contains(raw, []byte("s"+strconv.FormatInt(seq, 10))) || bytes.Contains(raw, be) ||
		cursor == strconv.FormatInt(seq, 10)
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}
