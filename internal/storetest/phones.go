package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/phone"
)

// Phone numbers re-keyed to E.164 (member.PhoneRekeyer): cases of the
// conformance suite.
var phoneCases = []suiteCase{
	{"re-keying phone numbers makes every spelling of one number find the oldest member and lists the others", testRekeyPhones},
	{"a withdrawal or a merge settles a shared number: it finds the next oldest, and merged members are no duplicates", testRekeySettles},
}

// memberWithPhone creates a member whose number is stored exactly as given,
// as a server from before E.164 normalisation did.
func (e *env) memberWithPhone(p string) ledger.Member {
	e.t.Helper()
	m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: p, Name: "member " + short(),
		Status: "active", CreatedAt: e.clock.Now()}
	if err := e.raw.CreateMember(e.ctx, &m); err != nil {
		e.t.Fatalf("create member with phone %q: %v", p, err)
	}
	e.clock.Advance(time.Second) // oldest first is by creation time
	return m
}

func (e *env) rekeyer() member.PhoneRekeyer {
	e.t.Helper()
	r, ok := e.raw.(member.PhoneRekeyer)
	if !ok {
		e.t.Fatalf("%T does not re-key phone numbers (member.PhoneRekeyer)", e.raw)
	}
	return r
}

func ids(ms []ledger.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func (e *env) wantPhoneFinds(p string, want ledger.Member) {
	e.t.Helper()
	got, err := e.raw.MemberByPhone(e.ctx, p)
	if err != nil || got.ID != want.ID {
		e.t.Fatalf("MemberByPhone(%q) = %s, %v; want %s", p, got.ID, err, want.ID)
	}
}

func (e *env) wantDuplicates(want ...[]ledger.Member) {
	e.t.Helper()
	groups, normalized, err := e.rekeyer().PhoneDuplicates(e.ctx)
	if err != nil || !normalized {
		e.t.Fatalf("PhoneDuplicates: normalized %v, %v", normalized, err)
	}
	var got, wantIDs [][]string
	for _, g := range groups {
		got = append(got, ids(g))
	}
	for _, g := range want {
		wantIDs = append(wantIDs, ids(g))
	}
	if !slices.EqualFunc(got, wantIDs, slices.Equal) {
		e.t.Fatalf("PhoneDuplicates = %v; want %v", got, wantIDs)
	}
}

func testRekeyPhones(t *testing.T, e *env) {
	r := e.rekeyer()
	if _, normalized, err := r.PhoneDuplicates(e.ctx); err != nil || normalized {
		t.Fatalf("before re-keying: normalized %v, %v; want false", normalized, err)
	}
	// What the old normaliser kept: the digits, with a + when one was typed.
	m1 := e.memberWithPhone("01012345678")
	m2 := e.memberWithPhone("+821012345678")
	m3 := e.memberWithPhone("821012345678")
	m4 := e.memberWithPhone("+15550001111")
	m5 := e.memberWithPhone("0101234")       // no valid number: kept as it was
	m6 := e.memberWithPhone("010-9876-5432") // alone: rewritten, no duplicate
	none := e.member()                       // no phone at all

	rep, err := r.NormalizePhones(e.ctx, phone.Plan{}.Normalize)
	if err != nil {
		t.Fatal(err)
	}
	if rep.AlreadyDone || rep.Read != 6 || rep.Changed != 3 {
		t.Fatalf("re-key read %d, changed %d (done before: %v); want 6 read, 3 changed", rep.Read, rep.Changed, rep.AlreadyDone)
	}
	if !slices.Equal(ids(rep.Unparsed), ids([]ledger.Member{m5})) || !slices.Equal(ids(rep.Duplicates), ids([]ledger.Member{m2, m3})) {
		t.Fatalf("re-key unparsed %v, duplicates %v; want [%s], [%s %s]", ids(rep.Unparsed), ids(rep.Duplicates), m5.ID, m2.ID, m3.ID)
	}
	// The number, in E.164, finds the oldest of the three; nothing merged.
	e.wantPhoneFinds("+821012345678", m1)
	e.wantPhoneFinds("+15550001111", m4)
	e.wantPhoneFinds("0101234", m5)
	e.wantPhoneFinds("+821098765432", m6)
	for _, old := range []string{"01012345678", "821012345678", "010-9876-5432"} {
		if got, err := e.raw.MemberByPhone(e.ctx, old); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
			t.Fatalf("MemberByPhone(%q) after re-keying = %s, %v; want member_not_found (only E.164 finds)", old, got.ID, err)
		}
	}
	for _, m := range []ledger.Member{m1, m2, m3} {
		if got := e.mustMember(m.ID); got.Phone != "+821012345678" || got.Status != "active" {
			t.Fatalf("member %s after re-keying: phone %q, status %s; want +821012345678, active", m.ID, got.Phone, got.Status)
		}
	}
	if got := e.mustMember(none.ID); got.Phone != "" {
		t.Fatalf("a member without a phone has %q after re-keying", got.Phone)
	}
	e.wantDuplicates([]ledger.Member{m1, m2, m3})

	// The number is taken: a new member with it is refused, however the
	// duplicates hold it.
	dup := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: "+821012345678", Name: "again",
		Status: "active", CreatedAt: e.clock.Now()}
	if err := e.raw.CreateMember(e.ctx, &dup); ledger.ErrorCode(err) != ledger.CodeConflict {
		t.Fatalf("a new member with a re-keyed number: %v; want a conflict", err)
	}

	// Once only: a second run changes nothing and says so.
	again, err := r.NormalizePhones(e.ctx, func(string) (string, error) {
		t.Fatal("a second re-keying read a number")
		return "", nil
	})
	if err != nil || !again.AlreadyDone || again.Read != 0 {
		t.Fatalf("second re-key %+v, %v; want AlreadyDone and nothing read", again, err)
	}
	e.wantPhoneFinds("+821012345678", m1)
}

func testRekeySettles(t *testing.T, e *env) {
	ms, ok := e.raw.(member.Store)
	if !ok {
		t.Fatalf("%T has no member side", e.raw)
	}
	w := e.world()
	m1 := e.memberWithPhone("01012345678")
	m2 := e.memberWithPhone("+82 10 1234 5678")
	m3 := e.memberWithPhone("821012345678")
	if _, err := e.rekeyer().NormalizePhones(e.ctx, phone.Plan{}.Normalize); err != nil {
		t.Fatal(err)
	}
	e.earnPoints(m3, w.a1, 70)
	e.wantDuplicates([]ledger.Member{m1, m2, m3})

	// The oldest leaves: the number finds the next oldest, not no one.
	if err := ms.Withdraw(e.ctx, m1.ID, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.wantPhoneFinds("+821012345678", m2)
	e.wantDuplicates([]ledger.Member{m2, m3})

	// The operator merges the last duplicate: nothing is left to list, the
	// number still finds the member that stays, and its points moved.
	e.merge(m2, m3)
	e.wantDuplicates()
	e.wantPhoneFinds("+821012345678", m2)
	e.wantBalance(m2, 70, 0)
}
