package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/privacy"
)

// RunMember holds a store to member.Store: login codes, sessions, profiles,
// withdrawal, purging and the filtered history. exec runs raw SQL with
// the dialect's placeholders given as "?" and rewritten by the caller.
func RunMember(t *testing.T, open func(t *testing.T) ledger.Store, exec func(s ledger.Store, query string, args ...any) error) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s ledger.Store, ms member.Store)
	}{
		{"a login code is spent once, not after it expires, not after too many wrong guesses", testOTPLife},
		{"two logins with one code: one wins; a flood of guesses gets the limit's tries", testOTPRace},
		{"codes are counted per phone over a window", testOTPCount},
		{"sessions are found by hash and revoked", testSessions},
		{"the profile's name and consents change", testProfile},
		{"withdrawal erases personal data and revokes sessions, not the ledger", testWithdraw},
		{"old codes and dead sessions are purged", testPurge},
		{"member codes: one per member, found by reference, erased at withdrawal", testMemberCodes},
		{"member code attempts are counted per subject over a window, all or none", testCodeAttempts},
		{"a member code step is claimed by one merchant", testCodeClaims},
		{"a merchant's require_member_code is stored and read with its stores", testRequireMemberCode},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			c.fn(t, s, s.(member.Store))
		})
	}
	t.Run("history by date range and type is exact with clocks out of order", func(t *testing.T) {
		s := open(t)
		t.Cleanup(func() { s.Close() })
		testHistoryRanges(t, s, s.(member.Store), exec)
	})
}

var mt0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testOTPLife(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	ph := []byte("phone-hash-1")
	if _, err := ms.LatestOTP(ctx, ph); err != member.ErrNoOTP {
		t.Fatalf("no code yet: %v", err)
	}
	must(t, ms.CreateOTP(ctx, member.OTP{ID: "o1", PhoneHash: ph, CodeHash: []byte("c1"), CreatedAt: mt0, ExpiresAt: mt0.Add(5 * time.Minute)}))
	must(t, ms.CreateOTP(ctx, member.OTP{ID: "o2", PhoneHash: ph, CodeHash: []byte("c2"), CreatedAt: mt0.Add(time.Second), ExpiresAt: mt0.Add(5*time.Minute + time.Second)}))
	o, err := ms.LatestOTP(ctx, ph)
	if err != nil || o.ID != "o2" || string(o.CodeHash) != "c2" || !o.CreatedAt.Equal(mt0.Add(time.Second)) || o.Attempts != 0 || !o.UsedAt.IsZero() {
		t.Fatalf("latest = %+v, %v", o, err)
	}
	// Expired: no try, not spent.
	if ok, err := ms.TakeAttempt(ctx, "o1", mt0.Add(5*time.Minute), 5); err != nil || ok {
		t.Errorf("a try of an expired code: %v, %v", ok, err)
	}
	if ok, err := ms.UseOTP(ctx, "o1", mt0.Add(5*time.Minute)); err != nil || ok {
		t.Errorf("an expired code was spent: %v, %v", ok, err)
	}
	// Tries up to the limit, then none.
	for i := 1; i <= 3; i++ {
		if ok, err := ms.TakeAttempt(ctx, "o2", mt0.Add(time.Minute), 3); err != nil || !ok {
			t.Fatalf("try %d: %v, %v", i, ok, err)
		}
	}
	if ok, _ := ms.TakeAttempt(ctx, "o2", mt0.Add(time.Minute), 3); ok {
		t.Error("a 4th try under a limit of 3")
	}
	if ok, err := ms.UseOTP(ctx, "o2", mt0.Add(time.Minute)); err != nil || !ok {
		t.Errorf("a live code was not spent: %v, %v", ok, err)
	}
	if ok, _ := ms.UseOTP(ctx, "o2", mt0.Add(time.Minute)); ok {
		t.Error("a code was spent twice")
	}
	if ok, _ := ms.TakeAttempt(ctx, "o2", mt0.Add(time.Minute), 10); ok {
		t.Error("a try of a spent code")
	}
	if o, _ := ms.LatestOTP(ctx, ph); !o.UsedAt.Equal(mt0.Add(time.Minute)) || o.Attempts != 3 {
		t.Errorf("after use: %+v", o)
	}
}

func testOTPRace(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	must(t, ms.CreateOTP(ctx, member.OTP{ID: "race", PhoneHash: []byte("p"), CodeHash: []byte("c"), CreatedAt: mt0, ExpiresAt: mt0.Add(time.Hour)}))
	var wg sync.WaitGroup
	var mu sync.Mutex
	tries := 0
	for range 32 {
		wg.Go(func() {
			ok, err := ms.TakeAttempt(ctx, "race", mt0.Add(time.Minute), 5)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				tries++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if tries != 5 {
		t.Errorf("32 concurrent guesses got %d tries under a limit of 5", tries)
	}
	wins := 0
	for range 16 {
		wg.Go(func() {
			ok, err := ms.UseOTP(ctx, "race", mt0.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("%d logins spent one code", wins)
	}
}

func testOTPCount(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	for i := range 4 {
		must(t, ms.CreateOTP(ctx, member.OTP{ID: fmt.Sprint("c", i), PhoneHash: []byte("p"), CodeHash: []byte("c"),
			CreatedAt: mt0.Add(time.Duration(i) * 20 * time.Minute), ExpiresAt: mt0.Add(time.Hour)}))
	}
	must(t, ms.CreateOTP(ctx, member.OTP{ID: "other", PhoneHash: []byte("q"), CodeHash: []byte("c"), CreatedAt: mt0.Add(time.Hour), ExpiresAt: mt0.Add(2 * time.Hour)}))
	n, oldest, err := ms.CountOTPs(ctx, []byte("p"), mt0.Add(10*time.Minute))
	if err != nil || n != 3 || !oldest.Equal(mt0.Add(20*time.Minute)) {
		t.Errorf("CountOTPs = %d, %v, %v; want 3, the one at +20m", n, oldest, err)
	}
	if n, _, err := ms.CountOTPs(ctx, []byte("none"), mt0); err != nil || n != 0 {
		t.Errorf("CountOTPs of an unknown phone = %d, %v", n, err)
	}
}

func testSessions(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	s := member.Session{ID: "s1", Hash: []byte("h1"), Prefix: "pd_ses_live_abcd", MemberID: "m1", Mode: "live",
		CreatedAt: mt0, ExpiresAt: mt0.Add(24 * time.Hour)}
	must(t, ms.CreateSession(ctx, s))
	got, err := ms.SessionByHash(ctx, []byte("h1"))
	if err != nil || got.ID != s.ID || got.MemberID != s.MemberID || got.Mode != s.Mode || got.Prefix != s.Prefix ||
		!got.CreatedAt.Equal(s.CreatedAt) || !got.ExpiresAt.Equal(s.ExpiresAt) || !got.RevokedAt.IsZero() {
		t.Fatalf("SessionByHash = %+v, %v", got, err)
	}
	if _, err := ms.SessionByHash(ctx, []byte("nope")); err != member.ErrNoSession {
		t.Errorf("an unknown hash: %v", err)
	}
	must(t, ms.RevokeSession(ctx, "s1", mt0.Add(time.Hour)))
	must(t, ms.RevokeSession(ctx, "s1", mt0.Add(2*time.Hour))) // again: no change
	if got, _ := ms.SessionByHash(ctx, []byte("h1")); !got.RevokedAt.Equal(mt0.Add(time.Hour)) {
		t.Errorf("revoked at %v", got.RevokedAt)
	}
}

func newMember(t *testing.T, s ledger.Store, phone string) ledger.Member {
	t.Helper()
	m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: phone, Name: "Hana", Status: "active", CreatedAt: mt0}
	must(t, s.CreateMember(context.Background(), &m))
	return m
}

func testProfile(t *testing.T, s ledger.Store, ms member.Store) {
	ctx := context.Background()
	m := newMember(t, s, "+821055550001")
	p, err := ms.Profile(ctx, m.ID)
	if err != nil || p.Member != m || p.MarketingConsent || p.AnalyticsConsent || p.ConsentsUpdatedAt != nil || p.WithdrawnAt != nil {
		t.Fatalf("Profile = %+v, %v; member %+v", p, err, m)
	}
	name, yes := "Hana Kim", true
	p, err = ms.UpdateProfile(ctx, m.ID, member.ProfileUpdate{Name: &name}, mt0.Add(time.Hour))
	if err != nil || p.Name != name || p.ConsentsUpdatedAt != nil || p.Phone != m.Phone {
		t.Errorf("after a new name: %+v, %v", p, err)
	}
	p, err = ms.UpdateProfile(ctx, m.ID, member.ProfileUpdate{AnalyticsConsent: &yes}, mt0.Add(2*time.Hour))
	if err != nil || p.Name != name || !p.AnalyticsConsent || p.MarketingConsent || p.ConsentsUpdatedAt == nil || !p.ConsentsUpdatedAt.Equal(mt0.Add(2*time.Hour)) {
		t.Errorf("after a consent: %+v, %v", p, err)
	}
	if _, err := ms.UpdateProfile(ctx, "nobody", member.ProfileUpdate{Name: &name}, mt0); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("an unknown member: %v", err)
	}
	if _, err := ms.Profile(ctx, "nobody"); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("an unknown member's profile: %v", err)
	}
}

func testWithdraw(t *testing.T, s ledger.Store, ms member.Store) {
	ctx := context.Background()
	m := newMember(t, s, "+821055550002")
	other := newMember(t, s, "+821055550003")
	yes := true
	_, err := ms.UpdateProfile(ctx, m.ID, member.ProfileUpdate{MarketingConsent: &yes}, mt0)
	must(t, err)
	for i, who := range []string{m.ID, m.ID, other.ID} {
		must(t, ms.CreateSession(ctx, member.Session{ID: fmt.Sprint("s", i), Hash: []byte{byte(i)}, Prefix: "p", MemberID: who, Mode: "live",
			CreatedAt: mt0, ExpiresAt: mt0.Add(time.Hour)}))
	}
	balance := func(id string) ledger.Balance {
		b, err := s.Balance(ctx, id)
		must(t, err)
		return b
	}
	before := balance(m.ID)
	// Login codes asked for a number carry its lookup hash: the member's go
	// with the withdrawal, another member's stay.
	mine, theirs := privacy.ProcessPhones().Index(m.Phone), privacy.ProcessPhones().Index(other.Phone)
	for i, h := range [][]byte{mine, mine, theirs} {
		must(t, ms.CreateOTP(ctx, member.OTP{ID: fmt.Sprint("w", i), PhoneHash: h, CodeHash: []byte{byte(i)},
			CreatedAt: mt0, ExpiresAt: mt0.Add(5 * time.Minute)}))
	}

	must(t, ms.Withdraw(ctx, m.ID, mt0.Add(time.Minute)))
	if _, err := ms.LatestOTP(ctx, mine); err != member.ErrNoOTP {
		t.Errorf("a login code of the withdrawn number is still there: %v", err)
	}
	if o, err := ms.LatestOTP(ctx, theirs); err != nil || o.ID != "w2" {
		t.Errorf("another member's login code: %+v, %v", o, err)
	}
	p, err := ms.Profile(ctx, m.ID)
	if err != nil || p.Phone != "" || p.Name != "" || p.Status != member.StatusWithdrawn || p.MarketingConsent ||
		p.WithdrawnAt == nil || !p.WithdrawnAt.Equal(mt0.Add(time.Minute)) || p.CardNumber != m.CardNumber {
		t.Errorf("withdrawn profile %+v, %v", p, err)
	}
	if got, err := s.Member(ctx, m.ID); err != nil || got.Status != member.StatusWithdrawn || got.Phone != "" {
		t.Errorf("Member = %+v, %v", got, err)
	}
	if _, err := s.MemberByPhone(ctx, m.Phone); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("the phone still finds: %v", err)
	}
	if _, err := s.MemberByCard(ctx, m.CardNumber); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("the card still finds: %v", err)
	}
	for i := range 3 {
		sess, err := ms.SessionByHash(ctx, []byte{byte(i)})
		must(t, err)
		if revoked := !sess.RevokedAt.IsZero(); revoked != (sess.MemberID == m.ID) {
			t.Errorf("session %s of %s: revoked %v", sess.ID, sess.MemberID, revoked)
		}
	}
	if balance(m.ID) != before {
		t.Errorf("the balance changed: %+v, was %+v", balance(m.ID), before)
	}
	if err := ms.Withdraw(ctx, m.ID, mt0.Add(2*time.Minute)); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("a second withdrawal: %v", err)
	}
	name := "back"
	if _, err := ms.UpdateProfile(ctx, m.ID, member.ProfileUpdate{Name: &name}, mt0); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("a withdrawn member's profile changed: %v", err)
	}
	// The number is free for a new member.
	again := newMember(t, s, m.Phone)
	if got, err := s.MemberByPhone(ctx, m.Phone); err != nil || got.ID != again.ID {
		t.Errorf("the number signed up again: %+v, %v", got, err)
	}
	if got, err := s.MemberByPhone(ctx, other.Phone); err != nil || got.ID != other.ID {
		t.Errorf("another member: %+v, %v", got, err)
	}
}

func testPurge(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	old, recent := mt0.Add(-48*time.Hour), mt0.Add(-time.Hour)
	for i, at := range []time.Time{old, recent} {
		must(t, ms.CreateOTP(ctx, member.OTP{ID: fmt.Sprint("otp-", i), PhoneHash: []byte{byte(i)}, CodeHash: []byte{1},
			CreatedAt: at, ExpiresAt: at.Add(5 * time.Minute)}))
		must(t, ms.CreateSession(ctx, member.Session{ID: fmt.Sprint("s-expired-", i), Hash: []byte{2, byte(i)}, Prefix: "p",
			MemberID: "m", Mode: "live", CreatedAt: at.Add(-time.Hour), ExpiresAt: at}))
	}
	must(t, ms.CreateSession(ctx, member.Session{ID: "s-revoked", Hash: []byte{3}, Prefix: "p", MemberID: "m", Mode: "live", CreatedAt: old, ExpiresAt: mt0.Add(time.Hour)}))
	must(t, ms.RevokeSession(ctx, "s-revoked", old))
	must(t, ms.CreateSession(ctx, member.Session{ID: "s-live", Hash: []byte{4}, Prefix: "p", MemberID: "m", Mode: "live", CreatedAt: old, ExpiresAt: mt0.Add(time.Hour)}))

	n, err := ms.Purge(ctx, mt0.Add(-24*time.Hour))
	must(t, err)
	if n != 3 {
		t.Errorf("purged %d rows, want 3 (an old code, a session expired long ago, one revoked long ago)", n)
	}
	if _, err := ms.LatestOTP(ctx, []byte{0}); err != member.ErrNoOTP {
		t.Errorf("the old code: %v", err)
	}
	if o, err := ms.LatestOTP(ctx, []byte{1}); err != nil || o.ID != "otp-1" {
		t.Errorf("the recent code: %+v, %v", o, err)
	}
	for _, h := range [][]byte{{2, 1}, {4}} {
		if _, err := ms.SessionByHash(ctx, h); err != nil {
			t.Errorf("session %x: %v", h, err)
		}
	}
}

// testHistoryRanges checks History's date filter, which narrows by seq
// through the created_at index, against the plain definition, on times out
// of order by up to 25 s (several writers' clocks). The transactions are
// written straight into the table: 600, every other one member "a"'s.
func testHistoryRanges(t *testing.T, s ledger.Store, ms member.Store, exec func(s ledger.Store, query string, args ...any) error) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 1; i <= 600; i++ {
		typ, who := "earn", "b"
		if i%3 == 0 {
			typ = "redeem"
		}
		if i%2 == 0 {
			who = "a"
		}
		at := base.Add(time.Duration(i*10+((i*37)%11-5)*5) * time.Second)
		must(t, exec(s, `INSERT INTO transactions (seq, id, type, member_id, merchant_id, store_id, receipt, points, created_at, hash)
			VALUES (?, ?, ?, ?, 'm', 's', ?, 1, ?, ?)`, int64(i), fmt.Sprint("txn-", i), typ, who, fmt.Sprint("R", i), at, []byte{0}))
	}
	all, err := ms.History(ctx, "a", member.HistoryFilter{}, 0, 0)
	must(t, err)
	if len(all) != 300 {
		t.Fatalf("%d transactions of a", len(all))
	}
	for _, from := range []int{-1, 0, 7, 95, 400, 2990, 6100} {
		for _, to := range []int{-1, 3, 95, 96, 1000, 3001, 7000} {
			for _, types := range [][]ledger.TxType{nil, {ledger.TxRedeem}, {ledger.TxRedeem, ledger.TxEarn}} {
				f := member.HistoryFilter{Types: types}
				if from >= 0 {
					f.From = base.Add(time.Duration(from) * time.Second)
				}
				if to >= 0 {
					f.To = base.Add(time.Duration(to) * time.Second)
				}
				var want []string
				for _, tx := range all {
					if (f.From.IsZero() || !tx.CreatedAt.Before(f.From)) && (f.To.IsZero() || tx.CreatedAt.Before(f.To)) &&
						(types == nil || tx.Type == types[0] || len(types) > 1 && tx.Type == types[1]) {
						want = append(want, tx.ID)
					}
				}
				var got []string
				before := int64(0)
				for {
					page, err := ms.History(ctx, "a", f, before, 7)
					must(t, err)
					for _, tx := range page {
						got = append(got, tx.ID)
					}
					if len(page) < 7 {
						break
					}
					before = page[len(page)-1].Seq
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("from %d to %d types %v: got %d transactions, want %d", from, to, types, len(got), len(want))
				}
			}
		}
	}
}
