package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// The member code store (member.CodeStore): secrets found by reference,
// the attempt counts and the claims of code steps.

func testMemberCodes(t *testing.T, s ledger.Store, ms member.Store) {
	ctx := context.Background()
	m := newMember(t, s, "+821055550010")
	other := newMember(t, s, "+821055550011")
	secret := []byte("01234567890123456789")
	c, err := ms.EnsureMemberCode(ctx, member.MemberCode{MemberID: m.ID, Ref: 123456789, Secret: secret, CreatedAt: mt0})
	if err != nil || c.MemberID != m.ID || c.Ref != 123456789 || string(c.Secret) != string(secret) || !c.CreatedAt.Equal(mt0) {
		t.Fatalf("first code = %+v, %v", c, err)
	}
	// The member keeps the code they have: a second call (two app screens
	// at once) answers the first.
	again, err := ms.EnsureMemberCode(ctx, member.MemberCode{MemberID: m.ID, Ref: 987654321, Secret: []byte("another secret......"), CreatedAt: mt0.Add(time.Hour)})
	if err != nil || again.Ref != 123456789 || string(again.Secret) != string(secret) {
		t.Errorf("second code = %+v, %v; want the first", again, err)
	}
	if _, err := ms.EnsureMemberCode(ctx, member.MemberCode{MemberID: other.ID, Ref: 123456789, Secret: secret, CreatedAt: mt0}); !errors.Is(err, member.ErrCodeRefTaken) {
		t.Errorf("another member's reference: %v, want ErrCodeRefTaken", err)
	}
	if got, err := ms.MemberCodeByRef(ctx, 123456789); err != nil || got.MemberID != m.ID || string(got.Secret) != string(secret) {
		t.Errorf("by reference = %+v, %v", got, err)
	}
	if _, err := ms.MemberCodeByRef(ctx, 987654321); !errors.Is(err, member.ErrNoMemberCode) {
		t.Errorf("a reference nobody has: %v", err)
	}
	// Withdrawal erases the secret with the rest of the personal data.
	must(t, ms.Withdraw(ctx, m.ID, mt0.Add(time.Minute)))
	if _, err := ms.MemberCodeByRef(ctx, 123456789); !errors.Is(err, member.ErrNoMemberCode) {
		t.Errorf("the code of a withdrawn member still finds: %v", err)
	}
}

func testCodeAttempts(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	const window = 10 * time.Minute
	take := func(at time.Time, subjects ...string) (bool, time.Time) {
		t.Helper()
		ok, retry, err := ms.TakeCodeAttempts(ctx, subjects, at, window, 3)
		must(t, err)
		return ok, retry
	}
	for i := range 3 {
		if ok, _ := take(mt0.Add(time.Duration(i)*time.Second), "key:a", "member:x"); !ok {
			t.Fatalf("attempt %d refused under a limit of 3", i+1)
		}
	}
	if ok, retry := take(mt0.Add(time.Minute), "key:b", "member:x"); ok || !retry.Equal(mt0.Add(window)) {
		t.Errorf("4th attempt for member x: %v, retry at %v; want refused until %v", ok, retry, mt0.Add(window))
	}
	// Refused as a whole: key b counted nothing.
	for i := range 3 {
		if ok, _ := take(mt0.Add(time.Minute), "key:b"); !ok {
			t.Fatalf("key b, attempt %d: refused (the refused pair counted it?)", i+1)
		}
	}
	if ok, _ := take(mt0.Add(time.Minute), "key:b"); ok {
		t.Error("key b: a 4th attempt")
	}
	// A right code gives its attempt back.
	must(t, ms.ReturnCodeAttempts(ctx, []string{"key:a", "member:x"}))
	if ok, _ := take(mt0.Add(2*time.Minute), "key:a", "member:x"); !ok {
		t.Error("an attempt given back was not free again")
	}
	// The window ends: counting starts over.
	if ok, _ := take(mt0.Add(window), "key:a", "member:x"); !ok {
		t.Error("refused after the window ended")
	}
	// A flood of concurrent attempts gets the limit's worth.
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := 0
	for range 24 {
		wg.Go(func() {
			ok, _, err := ms.TakeCodeAttempts(ctx, []string{"key:flood", "member:flood"}, mt0, window, 3)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				got++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got != 3 {
		t.Errorf("24 concurrent attempts: %d counted under a limit of 3", got)
	}
}

func testCodeClaims(t *testing.T, _ ledger.Store, ms member.Store) {
	ctx := context.Background()
	if h, err := ms.ClaimCodeStep(ctx, "m1", 100, "shop-a", mt0); err != nil || h != "shop-a" {
		t.Fatalf("first claim: %q, %v", h, err)
	}
	if h, err := ms.ClaimCodeStep(ctx, "m1", 100, "shop-b", mt0); err != nil || h != "shop-a" {
		t.Errorf("second merchant: holder %q, %v; want shop-a", h, err)
	}
	if h, err := ms.ClaimCodeStep(ctx, "m1", 100, "shop-a", mt0); err != nil || h != "shop-a" {
		t.Errorf("the holder again: %q, %v", h, err)
	}
	if h, err := ms.ClaimCodeStep(ctx, "m1", 101, "shop-b", mt0); err != nil || h != "shop-b" {
		t.Errorf("the next step: %q, %v", h, err)
	}
	if h, err := ms.ClaimCodeStep(ctx, "m2", 100, "shop-b", mt0); err != nil || h != "shop-b" {
		t.Errorf("another member: %q, %v", h, err)
	}
	// Concurrent claims agree on one holder.
	var wg sync.WaitGroup
	holders := make([]string, 16)
	for i := range holders {
		wg.Go(func() {
			h, err := ms.ClaimCodeStep(ctx, "m3", 7, string(rune('a'+i)), mt0)
			if err != nil {
				t.Error(err)
			}
			holders[i] = h
		})
	}
	wg.Wait()
	for _, h := range holders {
		if h != holders[0] || h == "" {
			t.Fatalf("concurrent claims saw holders %q", holders)
		}
	}
	// Purged after a day with the login codes.
	if _, err := ms.Purge(ctx, mt0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if h, err := ms.ClaimCodeStep(ctx, "m1", 100, "shop-b", mt0.Add(time.Minute)); err != nil || h != "shop-b" {
		t.Errorf("after the purge: %q, %v; want the old claim gone", h, err)
	}
}

// testRequireMemberCode: the merchant setting is stored, read with the
// merchant and with its stores (where the API reads it).
func testRequireMemberCode(t *testing.T, s ledger.Store, _ member.Store) {
	ctx := context.Background()
	bo, ok := s.(backoffice.Store)
	if !ok {
		t.Skip("no back office")
	}
	mer := ledger.Merchant{ID: "req-m", Name: "M", EarnRateBP: 100, PointValidityDays: 365, Status: "active", CreatedAt: mt0}
	must(t, s.CreateMerchant(ctx, &mer))
	must(t, s.CreateStore(ctx, ledger.Shop{ID: "req-s", MerchantID: mer.ID, Name: "S", Status: "active", CreatedAt: mt0}))
	if m, err := s.Merchant(ctx, mer.ID); err != nil || m.RequireMemberCode {
		t.Fatalf("new merchant: %+v, %v", m, err)
	}
	m, err := bo.UpdateMerchant(ctx, mer.ID, func(m *ledger.Merchant) (*backoffice.Entry, error) {
		m.RequireMemberCode = true
		return &backoffice.Entry{ID: ledger.NewID(), At: mt0, Action: backoffice.ActionMerchantUpdate,
			TargetType: backoffice.TargetMerchant, TargetID: m.ID}, nil
	})
	if err != nil || !m.RequireMemberCode {
		t.Fatalf("update: %+v, %v", m, err)
	}
	if m, err := s.Merchant(ctx, mer.ID); err != nil || !m.RequireMemberCode {
		t.Errorf("read back: %+v, %v", m, err)
	}
	if si, err := s.StoreInfo(ctx, "req-s"); err != nil || !si.Merchant.RequireMemberCode {
		t.Errorf("store's merchant: %+v, %v", si, err)
	}
}
