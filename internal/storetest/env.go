package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// epoch is where every fake clock starts: a fixed instant, already at the
// microsecond precision the stores keep.
var epoch = time.Date(2026, time.March, 2, 9, 30, 0, 0, time.UTC)

// Clock is a fake clock that tests move by hand, so that lot expiry and
// hold timeouts happen exactly when a test says. It is safe for concurrent
// use (the writer reads it from its own goroutine).
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: ledger.MicroTime(t)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = ledger.MicroTime(c.now.Add(d))
}

// gateStore wraps a Store so that a test can hold the writer inside Write
// while it queues more operations: everything queued meanwhile then goes
// into the next batch, one database transaction.
type gateStore struct {
	ledger.Store
	mu      sync.Mutex
	gate    chan struct{} // while non-nil, Write waits for it to close
	entered chan struct{} // told once when a Write starts waiting
}

func (g *gateStore) Write(ctx context.Context, fn func(ledger.BatchTx) error) error {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.entered = nil
	g.mu.Unlock()
	if gate != nil {
		if entered != nil {
			close(entered)
		}
		<-gate
	}
	return g.Store.Write(ctx, fn)
}

// env is one test's world: a fresh store, a writer on a fake clock and the
// actors that call it.
type env struct {
	t     *testing.T
	ctx   context.Context
	raw   ledger.Store // what open returned
	store *gateStore   // what the writer writes through
	w     *ledger.Writer
	clock *Clock
	admin ledger.Actor

	// skipAudit spares a test that damaged its ledger on purpose the audit
	// that otherwise ends every test.
	skipAudit bool

	mu      sync.Mutex
	batches []int // sizes of committed batches
}

// newEnv opens a fresh store and starts a writer on it. When the test ends
// the writer is drained and closed, then (unless the test damaged the store
// on purpose) the audit must find the ledger sound, then the store closes.
func newEnv(t *testing.T, open func(t *testing.T) ledger.Store, audit bool) *env {
	t.Helper()
	raw := open(t)
	if raw == nil {
		t.Fatal("open returned no store")
	}
	e := &env{t: t, ctx: context.Background(), raw: raw, store: &gateStore{Store: raw},
		clock: NewClock(epoch), admin: ledger.Actor{KeyID: "key-admin"}, skipAudit: !audit}
	t.Cleanup(func() {
		if err := raw.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	t.Cleanup(func() {
		if !e.skipAudit {
			e.mustBeSound()
		}
	})
	e.w = ledger.NewWriter(e.store, ledger.WriterConfig{Now: e.clock.Now, Observer: batchWatch{e}})
	t.Cleanup(e.w.Close)
	return e
}

// batchWatch records committed batch sizes. A batch that fails as a whole
// is a storage failure: the writer then retries its operations one by one,
// which hides it from the callers, so the test fails here.
type batchWatch struct{ e *env }

func (batchWatch) Operation(ledger.OpKind, time.Duration, string) {}

func (w batchWatch) Batch(size int, _ time.Duration, err error) {
	e := w.e
	if err != nil {
		e.t.Errorf("a batch of %d operations failed in the store: %v", size, err)
		return
	}
	e.mu.Lock()
	e.batches = append(e.batches, size)
	e.mu.Unlock()
}

// mustBeSound runs the audit, both on the store's audit source and through
// VerifyStore (on one snapshot where the store offers it), and fails the
// test on any discrepancy.
func (e *env) mustBeSound() *ledger.AuditReport {
	e.t.Helper()
	var last *ledger.AuditReport
	for _, a := range audits {
		rep, err := a.run(e.ctx, e.raw)
		if err != nil {
			e.t.Fatalf("%s: %v", a.name, err)
		}
		if !rep.Sound() {
			for _, d := range rep.Discrepancies {
				e.t.Errorf("%s: %s: %s", a.name, d.Kind, d.Detail)
			}
			e.t.Errorf("%s found %d discrepancies (%d more not listed)", a.name, len(rep.Discrepancies), rep.Truncated)
		}
		last = rep
	}
	return last
}

// audits are the two ways to audit a store.
var audits = []struct {
	name string
	run  func(ctx context.Context, s ledger.Store) (*ledger.AuditReport, error)
}{
	{"Verify", func(ctx context.Context, s ledger.Store) (*ledger.AuditReport, error) {
		return ledger.Verify(ctx, s.Audit())
	}},
	{"VerifyStore", ledger.VerifyStore},
}

// merchant creates a trading merchant.
func (e *env) merchant(rateBP int64, validityDays int) ledger.Merchant {
	e.t.Helper()
	return e.merchantCapped(rateBP, validityDays, 0)
}

// merchantCapped creates a trading merchant whose keys may name up to
// maxExplicit points on an earn.
func (e *env) merchantCapped(rateBP int64, validityDays int, maxExplicit int64) ledger.Merchant {
	e.t.Helper()
	m := ledger.Merchant{ID: ledger.NewID(), Name: "merchant " + short(), EarnRateBP: rateBP,
		PointValidityDays: validityDays, Status: "active", CreatedAt: e.clock.Now(), MaxExplicitPoints: maxExplicit}
	if err := e.raw.CreateMerchant(e.ctx, &m); err != nil {
		e.t.Fatalf("create merchant: %v", err)
	}
	if m.IssuedAccount == 0 || m.RedeemedAccount == 0 || m.IssuedAccount == m.RedeemedAccount {
		e.t.Fatalf("create merchant filled in accounts %d and %d; want two distinct accounts", m.IssuedAccount, m.RedeemedAccount)
	}
	return m
}

// shop creates a store of merchant m.
func (e *env) shop(m ledger.Merchant) ledger.Shop {
	e.t.Helper()
	s := ledger.Shop{ID: ledger.NewID(), MerchantID: m.ID, Name: "store " + short(), Status: ledger.StatusActive, CreatedAt: e.clock.Now()}
	if err := e.raw.CreateStore(e.ctx, s); err != nil {
		e.t.Fatalf("create store: %v", err)
	}
	return s
}

// member creates an active member without a phone number.
func (e *env) member() ledger.Member {
	e.t.Helper()
	m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "member " + short(),
		Status: "active", CreatedAt: e.clock.Now()}
	if err := e.raw.CreateMember(e.ctx, &m); err != nil {
		e.t.Fatalf("create member: %v", err)
	}
	if m.AccountID == 0 {
		e.t.Fatal("create member filled in no account")
	}
	return m
}

var shortN struct {
	sync.Mutex
	n int
}

func short() string {
	shortN.Lock()
	defer shortN.Unlock()
	shortN.n++
	return fmt.Sprint(shortN.n)
}

// pos is a terminal's API key: confined to one merchant, and to one store
// when store is set.
func pos(m ledger.Merchant, store string) ledger.Actor {
	return ledger.Actor{KeyID: "key-pos-" + m.ID + "-" + store, MerchantID: m.ID, StoreID: store}
}

func ptr(v int64) *int64 { return &v }

var keyN struct {
	sync.Mutex
	n int
}

// newKey returns an idempotency key never used before in this process.
func newKey() string {
	keyN.Lock()
	defer keyN.Unlock()
	keyN.n++
	return fmt.Sprintf("idem-%d-%s", keyN.n, ledger.NewID())
}

// submit runs op through the writer.
func (e *env) submit(op ledger.Op) (ledger.Result, error) {
	return e.w.Submit(e.ctx, op)
}

// do runs op (as the admin, with a fresh idempotency key, unless op says
// otherwise) and fails the test unless it succeeds with a transaction.
func (e *env) do(op ledger.Op) ledger.Result {
	e.t.Helper()
	if op.Actor == (ledger.Actor{}) {
		op.Actor = e.admin
	}
	if op.IdempotencyKey == "" {
		op.IdempotencyKey = newKey()
	}
	res, err := e.submit(op)
	if err != nil {
		e.t.Fatalf("%s: %v", op.Kind, err)
	}
	if res.Transaction == nil {
		e.t.Fatalf("%s: succeeded without a transaction", op.Kind)
	}
	if res.Replayed {
		e.t.Fatalf("%s: replayed a fresh idempotency key", op.Kind)
	}
	return res
}

// fail runs op (as the admin with a fresh key unless op says otherwise) and
// fails the test unless it is refused with code.
func (e *env) fail(code string, op ledger.Op) *ledger.Error {
	e.t.Helper()
	if op.Actor == (ledger.Actor{}) {
		op.Actor = e.admin
	}
	if op.IdempotencyKey == "" {
		op.IdempotencyKey = newKey()
	}
	_, err := e.submit(op)
	return wantCode(e.t, err, code)
}

// wantCode fails the test unless err is an *ledger.Error with code.
func wantCode(t *testing.T, err error, code string) *ledger.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("succeeded; want refusal %s", code)
	}
	var le *ledger.Error
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T); want a *ledger.Error with code %s", err, err, code)
	}
	if le.Code != code {
		t.Fatalf("error code %s (%v); want %s", le.Code, err, code)
	}
	return le
}

func (e *env) earn(member ledger.Member, store ledger.Shop, receipt string, amount int64) ledger.Result {
	e.t.Helper()
	return e.do(ledger.Op{Kind: ledger.OpEarn, MemberID: member.ID, StoreID: store.ID, Receipt: receipt, PurchaseAmount: ptr(amount)})
}

func (e *env) earnPoints(member ledger.Member, store ledger.Shop, points int64) ledger.Result {
	e.t.Helper()
	return e.do(ledger.Op{Kind: ledger.OpEarn, MemberID: member.ID, StoreID: store.ID, Receipt: "r-" + short(),
		PurchaseAmount: ptr(0), Points: ptr(points)})
}

func (e *env) redeem(member ledger.Member, store ledger.Shop, points int64) ledger.Result {
	e.t.Helper()
	return e.do(ledger.Op{Kind: ledger.OpRedeem, MemberID: member.ID, StoreID: store.ID, Receipt: "r-" + short(), Points: ptr(points)})
}

func (e *env) hold(member ledger.Member, store ledger.Shop, points, seconds int64) ledger.Result {
	e.t.Helper()
	res := e.do(ledger.Op{Kind: ledger.OpHold, MemberID: member.ID, StoreID: store.ID, Points: ptr(points), HoldSeconds: seconds})
	if res.Hold == nil {
		e.t.Fatal("hold: result carries no hold")
	}
	return res
}

// balance reads a member's balance and compares it with what the test expects.
func (e *env) wantBalance(m ledger.Member, balance, held int64) {
	e.t.Helper()
	b, err := e.raw.Balance(e.ctx, m.ID)
	if err != nil {
		e.t.Fatalf("balance: %v", err)
	}
	want := ledger.Balance{MemberID: m.ID, Balance: balance, Held: held, Available: balance - held}
	if b != want {
		e.t.Fatalf("balance of %s is %+v; want %+v", m.Name, b, want)
	}
}

// wantLots compares a member's open lots, in the order the store lists them,
// with want (Remaining; ExpiresAt, ID, Points and MerchantID where set).
func (e *env) wantLots(m ledger.Member, want ...ledger.Lot) []ledger.Lot {
	e.t.Helper()
	got, err := e.raw.MemberLots(e.ctx, m.ID)
	if err != nil {
		e.t.Fatalf("member lots: %v", err)
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Remaining == w.Remaining && (w.ExpiresAt.IsZero() || g.ExpiresAt.Equal(w.ExpiresAt)) && g.MemberID == m.ID &&
			(w.ID == "" || g.ID == w.ID) && (w.Points == 0 || g.Points == w.Points) &&
			(w.MerchantID == "" || g.MerchantID == w.MerchantID)
	}
	if !ok {
		e.t.Fatalf("lots of %s:\n got %s\nwant %s", m.Name, fmtLots(got), fmtLots(want))
	}
	return got
}

func fmtLots(lots []ledger.Lot) string {
	var parts []string
	for _, l := range lots {
		id := l.ID
		if len(id) > 8 {
			id = "…" + id[len(id)-6:]
		}
		parts = append(parts, fmt.Sprintf("{%s %d/%d until %s}", id, l.Remaining, l.Points, l.ExpiresAt.Format(time.RFC3339)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func (e *env) holdStatus(id string) ledger.HoldStatus {
	e.t.Helper()
	h, err := e.raw.Hold(e.ctx, id)
	if err != nil {
		e.t.Fatalf("hold %s: %v", id, err)
	}
	return h.Status
}

func (e *env) txn(id string) ledger.Transaction {
	e.t.Helper()
	t, err := e.raw.Transaction(e.ctx, id)
	if err != nil {
		e.t.Fatalf("transaction %s: %v", id, err)
	}
	return t
}

// head reads the end of the hash chain.
func (e *env) head() int64 {
	e.t.Helper()
	seq, _, err := e.raw.Audit().Head(e.ctx)
	if err != nil {
		e.t.Fatalf("head: %v", err)
	}
	return seq
}

// expireDue runs one expiry pass at the clock's time.
func (e *env) expireDue() ledger.ExpiryStats {
	e.t.Helper()
	st, err := ledger.ExpireDue(e.ctx, e.store, e.w, e.clock.Now())
	if err != nil {
		e.t.Fatalf("expiry pass: %v", err)
	}
	return st
}

// concurrently submits ops from as many goroutines into ONE batch, in the
// order given: it holds the writer inside a no-op batch until every op is
// queued, then lets it go. Results come back in the order of ops.
func (e *env) concurrently(ops []ledger.Op) ([]ledger.Result, []error) {
	e.t.Helper()
	gate, entered := make(chan struct{}), make(chan struct{})
	e.store.mu.Lock()
	e.store.gate, e.store.entered = gate, entered
	e.store.mu.Unlock()
	blocker := make(chan error, 1)
	go func() {
		// An expire_hold of no hold does nothing and writes nothing: it only
		// keeps the writer busy while the real operations queue up.
		_, err := e.submit(ledger.Op{Kind: ledger.OpExpireHold, HoldID: "no-such-hold"})
		blocker <- err
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		e.t.Fatal("the writer never started the blocking batch")
	}
	e.store.mu.Lock()
	e.store.gate = nil
	e.store.mu.Unlock()
	results := make([]ledger.Result, len(ops))
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = e.submit(op)
		}()
		// Wait until it is queued, so that the queue (and so the batch)
		// holds the operations in the order given.
		for e.w.QueueDepth() < i+1 {
			if time.Now().After(deadline) {
				close(gate)
				e.t.Fatalf("only %d of %d operations queued", e.w.QueueDepth(), len(ops))
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	e.mu.Lock()
	before := len(e.batches)
	e.mu.Unlock()
	close(gate)
	wg.Wait()
	if err := <-blocker; err != nil {
		e.t.Fatalf("blocking no-op: %v", err)
	}
	// The writer answers its callers before it reports the batch: wait for
	// the report.
	var after []int
	for wait := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		e.mu.Lock()
		after = slices.Clone(e.batches[before:])
		e.mu.Unlock()
		if slices.Contains(after, len(ops)) || time.Now().After(wait) {
			break
		}
	}
	if !slices.Contains(after, len(ops)) {
		e.t.Fatalf("batches after the gate opened had sizes %v; want one of %d", after, len(ops))
	}
	return results, errs
}

// body decodes a result's JSON answer.
func body(t *testing.T, res ledger.Result) ledger.Response {
	t.Helper()
	var r ledger.Response
	if err := json.Unmarshal(res.Body, &r); err != nil {
		t.Fatalf("decode result body %q: %v", res.Body, err)
	}
	return r
}
