package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// RunBackoffice runs the back office's conformance suite (backoffice.Store)
// on stores open returns; they must implement backoffice.Store and
// auth.KeyStore as well as ledger.Store.
func RunBackoffice(t *testing.T, open func(t *testing.T) ledger.Store) {
	for _, tc := range backofficeCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, open, true)
			bo, ok := e.raw.(backoffice.Store)
			if !ok {
				t.Fatalf("%T does not implement backoffice.Store", e.raw)
			}
			tc.fn(t, e, bo)
		})
	}
}

var backofficeCases = []struct {
	name string
	fn   func(t *testing.T, e *env, bo backoffice.Store)
}{
	{"an update writes the row and its audit entry together", testUpdateAudited},
	{"a change that fails or has nothing to do writes nothing", testUpdateNothing},
	{"a changed earn rate applies to earns after it", testRateChange},
	{"a suspended merchant or store takes no earn, redemption, hold or capture; cancellations and voids still work", testSuspendTrading},
	{"a suspended member cannot trade but can be adjusted and refunded", testSuspendMember},
	{"lists page by id and name search ignores case and takes wildcards literally", testLists},
	{"keys list, update with a rotation's new key, and record last use without going back", testKeys},
	{"an audit entry is written once per id and the log filters and pages newest first", testAuditLog},
}

func entry(action, typ, id string, before, after json.RawMessage) *backoffice.Entry {
	return &backoffice.Entry{ID: ledger.NewID(), At: time.Now(), ActorKeyID: "key-admin", ActorPrefix: "pd_test_AbCd",
		Action: action, TargetType: typ, TargetID: id, Before: before, After: after}
}

func testUpdateAudited(t *testing.T, e *env, bo backoffice.Store) {
	m := e.merchant(150, 30)
	got, err := bo.UpdateMerchant(e.ctx, m.ID, func(row *ledger.Merchant) (*backoffice.Entry, error) {
		before := backoffice.MerchantFields(*row)
		row.Name, row.EarnRateBP, row.PointValidityDays = "renamed", 300, 60
		return entry(backoffice.ActionMerchantUpdate, backoffice.TargetMerchant, row.ID, before, backoffice.MerchantFields(*row)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	read, err := e.raw.Merchant(e.ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "renamed" || read.Name != "renamed" || read.EarnRateBP != 300 || read.PointValidityDays != 60 ||
		read.IssuedAccount != m.IssuedAccount || read.Status != ledger.StatusActive {
		t.Fatalf("updated %+v, read back %+v", got, read)
	}
	log, err := bo.AuditLog(e.ctx, backoffice.AuditFilter{TargetID: m.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 || log[0].Action != backoffice.ActionMerchantUpdate || log[0].Seq == 0 ||
		!strings.Contains(string(log[0].Before), `"earn_rate_bp":150`) || !strings.Contains(string(log[0].After), `"earn_rate_bp":300`) {
		t.Fatalf("audit log %+v", log)
	}

	s := e.shop(m)
	sh, err := bo.UpdateStore(e.ctx, s.ID, func(row *ledger.Shop) (*backoffice.Entry, error) {
		row.Name = "new name"
		return entry(backoffice.ActionStoreUpdate, backoffice.TargetStore, row.ID, nil, backoffice.StoreFields(*row)), nil
	})
	if err != nil || sh.Name != "new name" || sh.MerchantID != m.ID {
		t.Fatalf("update store: %+v %v", sh, err)
	}
	si, err := e.raw.StoreInfo(e.ctx, s.ID)
	if err != nil || si.Name != "new name" || si.Status != ledger.StatusActive {
		t.Fatalf("store read back %+v %v", si, err)
	}
	for _, tc := range []struct {
		what string
		err  error
		code string
	}{
		{"merchant", second(bo.UpdateMerchant(e.ctx, "nope", nil)), ledger.CodeMerchantNotFound},
		{"store", second(bo.UpdateStore(e.ctx, "nope", nil)), ledger.CodeStoreNotFound},
		{"member", second(bo.UpdateMemberStatus(e.ctx, "nope", nil)), ledger.CodeMemberNotFound},
		{"key", second(bo.UpdateKey(e.ctx, "nope", nil, nil)), ledger.CodeNotFound},
		{"key read", second(bo.Key(e.ctx, "nope")), ledger.CodeNotFound},
	} {
		if ledger.ErrorCode(tc.err) != tc.code {
			t.Errorf("updating a missing %s: %v, want %s", tc.what, tc.err, tc.code)
		}
	}
}

func testUpdateNothing(t *testing.T, e *env, bo backoffice.Store) {
	m := e.merchant(150, 30)
	boom := errors.New("refused")
	_, err := bo.UpdateMerchant(e.ctx, m.ID, func(row *ledger.Merchant) (*backoffice.Entry, error) {
		row.Name = "should not stick"
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("the change's error came back as %v", err)
	}
	if _, err := bo.UpdateMerchant(e.ctx, m.ID, func(row *ledger.Merchant) (*backoffice.Entry, error) {
		row.Name = "nor this"
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	read, _ := e.raw.Merchant(e.ctx, m.ID)
	if read.Name != m.Name {
		t.Fatalf("name %q after two updates that wrote nothing", read.Name)
	}
	if log, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{}); len(log) != 0 {
		t.Fatalf("audit entries %+v", log)
	}
}

func setMerchantStatus(t *testing.T, e *env, bo backoffice.Store, id, status string) {
	t.Helper()
	if _, err := bo.UpdateMerchant(e.ctx, id, func(row *ledger.Merchant) (*backoffice.Entry, error) {
		row.Status = status
		return entry("merchant."+status, backoffice.TargetMerchant, id, nil, backoffice.MerchantFields(*row)), nil
	}); err != nil {
		t.Fatal(err)
	}
}

func testRateChange(t *testing.T, e *env, bo backoffice.Store) {
	m := e.merchant(100, 30)
	s := e.shop(m)
	mem := e.member()
	before := e.earn(mem, s, "r1", 10_000)
	if _, err := bo.UpdateMerchant(e.ctx, m.ID, func(row *ledger.Merchant) (*backoffice.Entry, error) {
		row.EarnRateBP, row.PointValidityDays = 500, 7
		return entry(backoffice.ActionMerchantUpdate, backoffice.TargetMerchant, m.ID, nil, backoffice.MerchantFields(*row)), nil
	}); err != nil {
		t.Fatal(err)
	}
	after := e.earn(mem, s, "r2", 10_000)
	if before.Transaction.Points != 100 || after.Transaction.Points != 500 {
		t.Fatalf("earned %d then %d; want 100 at 1 %% then 500 at 5 %%", before.Transaction.Points, after.Transaction.Points)
	}
	lots := e.wantLots(mem,
		ledger.Lot{ID: after.Transaction.ID, MemberID: mem.ID, Points: 500, Remaining: 500, ExpiresAt: ledger.ExpiryAt(e.clock.Now(), 7)},
		ledger.Lot{ID: before.Transaction.ID, MemberID: mem.ID, Points: 100, Remaining: 100, ExpiresAt: ledger.ExpiryAt(e.clock.Now(), 30)})
	_ = lots
}

func testSuspendTrading(t *testing.T, e *env, bo backoffice.Store) {
	m := e.merchant(100, 30)
	s1, s2 := e.shop(m), e.shop(m)
	mem := e.member()
	earned := e.earn(mem, s1, "r1", 100_000) // 1000 points
	hold := e.hold(mem, s1, 100, 600)
	hold2 := e.hold(mem, s1, 50, 600)

	setMerchantStatus(t, e, bo, m.ID, ledger.StatusSuspended)
	e.fail(ledger.CodeMerchantSuspended, ledger.Op{Kind: ledger.OpEarn, MemberID: mem.ID, StoreID: s1.ID, Receipt: "r2", PurchaseAmount: ptr(1000)})
	e.fail(ledger.CodeMerchantSuspended, ledger.Op{Kind: ledger.OpRedeem, MemberID: mem.ID, StoreID: s2.ID, Receipt: "x", Points: ptr(10)})
	e.fail(ledger.CodeMerchantSuspended, ledger.Op{Kind: ledger.OpHold, MemberID: mem.ID, StoreID: s2.ID, Points: ptr(10), HoldSeconds: 60})
	e.fail(ledger.CodeMerchantSuspended, ledger.Op{Kind: ledger.OpCapture, HoldID: hold.Hold.ID})
	// What the merchant did before it was suspended can still be undone.
	e.do(ledger.Op{Kind: ledger.OpVoid, HoldID: hold.Hold.ID})
	e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: earned.Transaction.ID, Points: ptr(10)})

	setMerchantStatus(t, e, bo, m.ID, ledger.StatusActive)
	e.earn(mem, s1, "r3", 1000)

	if _, err := bo.UpdateStore(e.ctx, s1.ID, func(row *ledger.Shop) (*backoffice.Entry, error) {
		row.Status = ledger.StatusSuspended
		return entry(backoffice.ActionStoreSuspend, backoffice.TargetStore, row.ID, nil, backoffice.StoreFields(*row)), nil
	}); err != nil {
		t.Fatal(err)
	}
	e.fail(ledger.CodeStoreSuspended, ledger.Op{Kind: ledger.OpEarn, MemberID: mem.ID, StoreID: s1.ID, Receipt: "r4", PurchaseAmount: ptr(1000)})
	e.fail(ledger.CodeStoreSuspended, ledger.Op{Kind: ledger.OpRedeem, MemberID: mem.ID, StoreID: s1.ID, Receipt: "x", Points: ptr(1)})
	e.fail(ledger.CodeStoreSuspended, ledger.Op{Kind: ledger.OpCapture, HoldID: hold2.Hold.ID})
	e.earn(mem, s2, "r4", 1000) // the merchant's other store trades on
	e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: earned.Transaction.ID, Points: ptr(10)})
}

func testSuspendMember(t *testing.T, e *env, bo backoffice.Store) {
	m := e.merchant(100, 30)
	s := e.shop(m)
	mem := e.member()
	earned := e.earn(mem, s, "r1", 100_000)
	hold := e.hold(mem, s, 100, 600)
	got, err := bo.UpdateMemberStatus(e.ctx, mem.ID, func(row *ledger.Member) (*backoffice.Entry, error) {
		before := backoffice.MemberFields(*row, false)
		row.Status = ledger.StatusSuspended
		row.Name = "an update of the status must not write this"
		en := entry(backoffice.ActionMemberSuspend, backoffice.TargetMember, row.ID, before, backoffice.MemberFields(*row, false))
		en.Reason = "card reported stolen"
		return en, nil
	})
	if err != nil || got.Status != ledger.StatusSuspended {
		t.Fatalf("suspend: %+v %v", got, err)
	}
	read, _ := e.raw.Member(e.ctx, mem.ID)
	if read.Status != ledger.StatusSuspended || read.Name != mem.Name {
		t.Fatalf("member read back %+v", read)
	}
	e.fail(ledger.CodeMemberSuspended, ledger.Op{Kind: ledger.OpEarn, MemberID: mem.ID, StoreID: s.ID, Receipt: "r2", PurchaseAmount: ptr(1000)})
	e.fail(ledger.CodeMemberSuspended, ledger.Op{Kind: ledger.OpRedeem, MemberID: mem.ID, StoreID: s.ID, Receipt: "x", Points: ptr(1)})
	e.fail(ledger.CodeMemberSuspended, ledger.Op{Kind: ledger.OpHold, MemberID: mem.ID, StoreID: s.ID, Points: ptr(1), HoldSeconds: 60})
	e.fail(ledger.CodeMemberSuspended, ledger.Op{Kind: ledger.OpCapture, HoldID: hold.Hold.ID})
	e.do(ledger.Op{Kind: ledger.OpAdjust, MemberID: mem.ID, Points: ptr(-5), Reason: "correction"})
	e.do(ledger.Op{Kind: ledger.OpAdjust, MemberID: mem.ID, Points: ptr(7), Reason: "goodwill"})
	e.do(ledger.Op{Kind: ledger.OpCancel, TransactionID: earned.Transaction.ID, Points: ptr(10)})
	e.do(ledger.Op{Kind: ledger.OpVoid, HoldID: hold.Hold.ID})
	e.wantBalance(mem, 1000-5+7-10, 0)
	log, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{TargetID: mem.ID})
	if len(log) != 1 || log[0].Reason != "card reported stolen" || strings.Contains(string(log[0].After), "must not") {
		t.Fatalf("audit %+v", log)
	}
}

func testLists(t *testing.T, e *env, bo backoffice.Store) {
	var merchants []string
	for range 5 {
		merchants = append(merchants, e.merchant(100, 30).ID)
	}
	slices.Sort(merchants)
	var paged []string
	after := ""
	for range 10 {
		page, err := bo.ListMerchants(e.ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, m := range page {
			paged = append(paged, m.ID)
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(paged, merchants) {
		t.Fatalf("paged merchants %v, want %v", paged, merchants)
	}
	all, err := bo.ListMerchants(e.ctx, "", 0)
	if err != nil || len(all) != 5 {
		t.Fatalf("all merchants: %d %v", len(all), err)
	}

	m, other := e.merchant(100, 30), e.merchant(100, 30)
	var stores []string
	for range 3 {
		stores = append(stores, e.shop(m).ID)
	}
	e.shop(other)
	slices.Sort(stores)
	got, err := bo.ListStores(e.ctx, m.ID, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
		if s.MerchantID != m.ID || s.Status != ledger.StatusActive {
			t.Errorf("listed store %+v", s)
		}
	}
	if !slices.Equal(ids, stores) {
		t.Fatalf("stores %v, want %v", ids, stores)
	}
	if got, _ := bo.ListStores(e.ctx, m.ID, stores[0], 1); len(got) != 1 || got[0].ID != stores[1] {
		t.Fatalf("second page %+v", got)
	}

	for _, name := range []string{"Kim Min-jun", "kimberly", "Park Ji-woo", "100% Kim", "Lee_Kim"} {
		mem := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: name, Status: ledger.StatusActive, CreatedAt: e.clock.Now()}
		if err := e.raw.CreateMember(e.ctx, &mem); err != nil {
			t.Fatal(err)
		}
	}
	names := func(q string, limit int) []string {
		t.Helper()
		ms, err := bo.SearchMembers(e.ctx, q, "", limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		slices.Sort(out)
		return out
	}
	if got := names("KIM", 0); !slices.Equal(got, []string{"100% Kim", "Kim Min-jun", "Lee_Kim", "kimberly"}) {
		t.Errorf("search KIM: %v", got)
	}
	if got := names("0%", 0); !slices.Equal(got, []string{"100% Kim"}) {
		t.Errorf("search 0%%: %v", got)
	}
	if got := names("e_K", 0); !slices.Equal(got, []string{"Lee_Kim"}) {
		t.Errorf("search e_K: %v", got)
	}
	if got := names("kim", 2); len(got) != 2 {
		t.Errorf("search with limit 2: %v", got)
	}
}

func testKeys(t *testing.T, e *env, bo backoffice.Store) {
	ks, ok := e.raw.(auth.KeyStore)
	if !ok {
		t.Fatalf("%T is no auth.KeyStore", e.raw)
	}
	var ids []string
	var first auth.Key
	for i := range 3 {
		_, k := auth.NewSecret(auth.ModeTest)
		k.ID, k.Role, k.Name = ledger.NewID(), auth.RoleViewer, fmt.Sprint("viewer ", i)
		k.CreatedAt = ledger.MicroTime(k.CreatedAt)
		if err := ks.CreateKey(e.ctx, k); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = k
		}
		ids = append(ids, k.ID)
	}
	slices.Sort(ids)
	list, err := bo.ListKeys(e.ctx, "", 0)
	if err != nil || len(list) != 3 || list[0].ID != ids[0] || list[2].ID != ids[2] || list[0].Prefix == "" {
		t.Fatalf("list %+v %v", list, err)
	}
	if page, _ := bo.ListKeys(e.ctx, ids[0], 1); len(page) != 1 || page[0].ID != ids[1] {
		t.Fatalf("second page %+v", page)
	}

	// A rotation: the new key and the old key's expiry in one transaction.
	_, nk := auth.NewSecret(auth.ModeTest)
	nk.ID, nk.Role, nk.Name, nk.CreatedAt = ledger.NewID(), first.Role, first.Name, ledger.MicroTime(nk.CreatedAt)
	nk.Lineage = first.Root() // what carries the idempotency scope across the rotation
	end := ledger.MicroTime(time.Now().Add(time.Hour))
	old, err := bo.UpdateKey(e.ctx, first.ID, &nk, func(k *auth.Key) (*backoffice.Entry, error) {
		k.ExpiresAt = end
		return entry(backoffice.ActionKeyRotate, backoffice.TargetKey, k.ID, nil, backoffice.KeyFields(*k)), nil
	})
	if err != nil || !old.ExpiresAt.Equal(end) {
		t.Fatalf("rotate: %+v %v", old, err)
	}
	byHash, err := ks.KeyByHash(e.ctx, first.Hash)
	if err != nil || !byHash.ExpiresAt.Equal(end) || !byHash.RevokedAt.IsZero() {
		t.Fatalf("old key read by hash: %+v %v", byHash, err)
	}
	if got, err := ks.KeyByHash(e.ctx, nk.Hash); err != nil || got.ID != nk.ID || !got.ExpiresAt.IsZero() ||
		got.Lineage != first.ID || got.IdempotencyScope() != first.IdempotencyScope() {
		t.Fatalf("new key: %+v %v; want lineage %s", got, err, first.ID)
	}
	if got, err := bo.Key(e.ctx, nk.ID); err != nil || got.Lineage != first.ID {
		t.Fatalf("new key by id: %+v %v; want lineage %s", got, err, first.ID)
	}
	if got, err := bo.Key(e.ctx, first.ID); err != nil || got.Lineage != "" {
		t.Fatalf("the first key of a chain has no lineage: %+v %v", got, err)
	}
	// A rotation whose new key cannot be stored changes nothing.
	if _, err := bo.UpdateKey(e.ctx, first.ID, &nk, func(k *auth.Key) (*backoffice.Entry, error) {
		k.RevokedAt = time.Now()
		return entry(backoffice.ActionKeyRotate, backoffice.TargetKey, k.ID, nil, nil), nil
	}); ledger.ErrorCode(err) != ledger.CodeConflict {
		t.Fatalf("a second insert of the same new key: %v", err)
	}
	if k, _ := bo.Key(e.ctx, first.ID); !k.RevokedAt.IsZero() {
		t.Fatal("a failed rotation revoked the key")
	}

	t1 := ledger.MicroTime(time.Now())
	if err := bo.TouchKeys(e.ctx, map[string]time.Time{first.ID: t1, nk.ID: t1}); err != nil {
		t.Fatal(err)
	}
	if err := bo.TouchKeys(e.ctx, map[string]time.Time{first.ID: t1.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if k, _ := bo.Key(e.ctx, first.ID); !k.LastUsedAt.Equal(t1) {
		t.Fatalf("last used %v, want %v (never moved backwards)", k.LastUsedAt, t1)
	}
	if err := bo.TouchKeys(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func testAuditLog(t *testing.T, e *env, bo backoffice.Store) {
	var written []backoffice.Entry
	for i := range 6 {
		en := *entry(backoffice.ActionAdjustment, backoffice.TargetMember, fmt.Sprint("member-", i%2), nil, backoffice.AdjustmentFields(int64(i)))
		en.At = ledger.MicroTime(en.At)
		if i%3 == 0 {
			en.ActorKeyID = "key-other"
		}
		en.TxnID = ledger.NewID()
		if err := bo.AppendAudit(e.ctx, en); err != nil {
			t.Fatal(err)
		}
		written = append(written, en)
	}
	// The same entry again (a retried request) is not a second entry.
	if err := bo.AppendAudit(e.ctx, written[5]); err != nil {
		t.Fatal(err)
	}
	all, err := bo.AuditLog(e.ctx, backoffice.AuditFilter{})
	if err != nil || len(all) != 6 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
	for i, en := range all {
		w := written[5-i]
		if en.ID != w.ID || !en.At.Equal(w.At) || en.TxnID != w.TxnID || string(en.After) != string(w.After) ||
			en.ActorPrefix != w.ActorPrefix || en.Before != nil {
			t.Fatalf("entry %d: %+v, wrote %+v", i, en, w)
		}
		if i > 0 && en.Seq >= all[i-1].Seq {
			t.Fatalf("not newest first: %d after %d", en.Seq, all[i-1].Seq)
		}
	}
	if got, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{TargetID: "member-1"}); len(got) != 3 {
		t.Errorf("by target: %d", len(got))
	}
	if got, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{ActorKeyID: "key-other"}); len(got) != 2 {
		t.Errorf("by actor: %d", len(got))
	}
	if got, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{TargetID: "member-0", ActorKeyID: "key-other"}); len(got) != 1 {
		t.Errorf("by target and actor: %d", len(got))
	}
	page, _ := bo.AuditLog(e.ctx, backoffice.AuditFilter{BeforeSeq: all[1].Seq, Limit: 2})
	if len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Errorf("a page before seq %d: %+v", all[1].Seq, page)
	}
}
