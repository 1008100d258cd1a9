package storetest

import (
	"bytes"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// RunModel drives a store with ops random operations (seeded by seed, so a
// failure can be replayed) and checks every answer against a plain
// in-memory model of the ledger written from the rules of DESIGN.md and the
// policies documented in the ledger package, not from its code: balances,
// held points, lots, holds, cancellation counters, idempotency records and
// the platform and merchant accounts. Every member is compared with the
// model periodically and at the end, and the audit must find the ledger
// sound.
//
// Some rounds submit several operations at once, each on another member (so
// that their outcomes do not depend on their order), sometimes forced into
// one batch, sometimes left to batch as they come; the model applies them in
// the order the ledger numbered them.
//
// POINTD_MODEL_SEED, when set, overrides seed: the way to replay a failure
// (the seed is logged) or to try others.
func RunModel(t *testing.T, open func(t *testing.T) ledger.Store, ops int, seed int64) {
	if v := os.Getenv("POINTD_MODEL_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("POINTD_MODEL_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("model test: %d operations, seed %d (replay with POINTD_MODEL_SEED=%d)", ops, seed, seed)
	e := newEnv(t, open, true)
	mt := newModelTest(t, e, seed)
	next := 300
	for mt.done < ops {
		mt.step()
		if mt.done >= next {
			mt.compareAll()
			next += 300
		}
	}
	mt.compareAll()
	rep := e.mustBeSound()
	t.Logf("model test: %d transactions, %d lots, %d holds; %v", rep.Transactions, rep.Lots, rep.Holds, mt.stats())
}

// ---- the model ----

type model struct {
	now       time.Time
	merchants map[string]*mMerchant
	stores    map[string]*mStore
	members   map[string]*mMember
	txns      map[string]*mTxn
	holds     map[string]*mHold
	receipts  map[ledger.ReceiptKey]bool
	idem      map[ledger.IdemKey]mIdem
	accounts  map[int64]int64 // non-member accounts: merchant, platform
}

type mMerchant struct {
	id               string
	rateBP           int64
	maxExplicit      int64
	validityDays     int
	issued, redeemed int64
	stores           []string
	receiptsByStore  map[string][]string
	shop             ledger.Merchant
	anyStore         ledger.Actor
}

type mStore struct {
	id       string
	merchant *mMerchant
	terminal ledger.Actor // confined to this store
}

type mMember struct {
	id      string
	merged  string // the member it was merged into; "" while not merged
	account int64
	balance int64
	held    int64
	lots    []*mLot
	txns    []string // ids of its transactions, oldest first
	holds   []string
}

type mLot struct {
	id        string
	points    int64
	remaining int64
	expires   time.Time
}

type mTxn struct {
	id               string
	typ              ledger.TxType
	member           string
	merchant, store  string
	points, amount   int64
	cancelledPoints  int64
	cancelledAmount  int64
	restore          time.Time
	merchantValidity int
	merchantRedeemed int64
	merchantIssued   int64
}

type mHold struct {
	id              string
	member          string
	merchant, store string
	points          int64
	status          ledger.HoldStatus
	expires         time.Time
}

type mIdem struct {
	fingerprint []byte
	body        []byte
}

// expect is what the model says an operation does.
type expect struct {
	code   string // the refusal, "" for a success
	replay bool
	body   []byte // of a replay
	noop   bool   // success without a transaction (internal ops)
	typ    ledger.TxType
	points int64
	amount int64 // the transaction's purchase amount
	ref    string
	member string
	hold   *mHold
	key    ledger.IdemKey // set when a success is to be recorded
	fp     []byte
}

func fail(code string) expect { return expect{code: code} }

func allowed(a ledger.Actor, merchant, store string) bool {
	return (a.MerchantID == "" || a.MerchantID == merchant) && (a.StoreID == "" || a.StoreID == store)
}

// apply runs op on the model. id is the id of the transaction the ledger
// made for it (only used when the model agrees it succeeds).
func (m *model) apply(op ledger.Op, id string) expect {
	var key ledger.IdemKey
	var fp []byte
	if op.IdempotencyKey != "" {
		key = ledger.IdemKey{Scope: op.Actor.KeyID, Key: op.IdempotencyKey}
		v := op
		_ = v.Validate() // fills in defaults, as the writer does before it fingerprints
		fp = v.Fingerprint()
		if rec, ok := m.idem[key]; ok {
			if !bytes.Equal(rec.fingerprint, fp) {
				return fail(ledger.CodeIdempotencyReused)
			}
			return expect{replay: true, body: rec.body}
		}
	}
	x := m.do(op, id)
	if x.code == "" && !x.noop && op.IdempotencyKey != "" {
		x.key, x.fp = key, fp
	}
	return x
}

func (m *model) do(op ledger.Op, id string) expect {
	switch op.Kind {
	case ledger.OpEarn:
		return m.earn(op, id)
	case ledger.OpRedeem:
		return m.redeem(op, id)
	case ledger.OpHold:
		return m.hold(op, id)
	case ledger.OpCapture:
		return m.capture(op, id)
	case ledger.OpVoid:
		return m.release(op, id, ledger.HoldVoided)
	case ledger.OpExpireHold:
		return m.release(op, id, ledger.HoldExpired)
	case ledger.OpCancel:
		return m.cancel(op, id)
	case ledger.OpAdjust:
		return m.adjust(op, id)
	case ledger.OpExpireLots:
		return m.expireLots(op, id)
	case ledger.OpMerge:
		return m.merge(op, id)
	}
	panic("model: unknown op " + string(op.Kind))
}

// at checks a member and a store for an operation at that store.
func (m *model) at(op ledger.Op) (*mMember, *mStore, string) {
	mem := m.members[op.MemberID]
	if mem == nil {
		return nil, nil, ledger.CodeMemberNotFound
	}
	if mem.merged != "" {
		return nil, nil, ledger.CodeMemberMerged
	}
	s := m.stores[op.StoreID]
	if s == nil {
		return nil, nil, ledger.CodeStoreNotFound
	}
	if !allowed(op.Actor, s.merchant.id, s.id) {
		return nil, nil, ledger.CodeForbidden
	}
	return mem, s, ""
}

func (m *model) record(t *mTxn) {
	if t.id == "" {
		return // applied without the ledger's answer (an expiry pass): nothing will refer to it
	}
	m.txns[t.id] = t
	if mem := m.members[t.member]; mem != nil {
		mem.txns = append(mem.txns, t.id)
	}
}

func (m *model) earn(op ledger.Op, id string) expect {
	mem, s, code := m.at(op)
	if code != "" {
		return fail(code)
	}
	rk := ledger.ReceiptKey{MerchantID: s.merchant.id, StoreID: s.id, Receipt: op.Receipt}
	if m.receipts[rk] {
		return fail(ledger.CodeReceiptEarned)
	}
	var points int64
	if op.Points != nil {
		// A merchant's keys name points only up to its cap; operators any.
		if op.Actor.MerchantID != "" && *op.Points > s.merchant.maxExplicit {
			return fail(ledger.CodeExplicitPoints)
		}
		points = *op.Points
	} else {
		// Basis points, rounded down.
		points = *op.PurchaseAmount * s.merchant.rateBP / 10000
	}
	m.receipts[rk] = true
	s.merchant.receiptsByStore[s.id] = append(s.merchant.receiptsByStore[s.id], op.Receipt)
	m.credit(mem, points, id, m.now.AddDate(0, 0, s.merchant.validityDays))
	m.accounts[s.merchant.issued] -= points
	m.record(&mTxn{id: id, typ: ledger.TxEarn, member: mem.id, merchant: s.merchant.id, store: s.id, points: points,
		amount: *op.PurchaseAmount, merchantValidity: s.merchant.validityDays, merchantIssued: s.merchant.issued, merchantRedeemed: s.merchant.redeemed})
	return expect{typ: ledger.TxEarn, points: points, amount: *op.PurchaseAmount, member: mem.id}
}

func (m *model) redeem(op ledger.Op, id string) expect {
	mem, s, code := m.at(op)
	if code != "" {
		return fail(code)
	}
	p := *op.Points
	if mem.balance-mem.held < p {
		return fail(ledger.CodeInsufficientPoints)
	}
	latest := m.debit(mem, p, "")
	m.accounts[s.merchant.redeemed] += p
	m.record(&mTxn{id: id, typ: ledger.TxRedeem, member: mem.id, merchant: s.merchant.id, store: s.id, points: p, restore: latest,
		merchantValidity: s.merchant.validityDays, merchantIssued: s.merchant.issued, merchantRedeemed: s.merchant.redeemed})
	return expect{typ: ledger.TxRedeem, points: p, member: mem.id}
}

func (m *model) hold(op ledger.Op, id string) expect {
	mem, s, code := m.at(op)
	if code != "" {
		return fail(code)
	}
	p := *op.Points
	if mem.balance-mem.held < p {
		return fail(ledger.CodeInsufficientPoints)
	}
	secs := op.HoldSeconds
	if secs == 0 {
		secs = ledger.DefaultHoldSeconds
	}
	h := &mHold{id: id, member: mem.id, merchant: s.merchant.id, store: s.id, points: p, status: ledger.HoldActive,
		expires: m.now.Add(time.Duration(secs) * time.Second)}
	m.holds[id] = h
	mem.holds = append(mem.holds, id)
	mem.held += p
	m.record(&mTxn{id: id, typ: ledger.TxHold, member: mem.id, merchant: s.merchant.id, store: s.id, points: p})
	return expect{typ: ledger.TxHold, points: p, member: mem.id, hold: h}
}

func (m *model) capture(op ledger.Op, id string) expect {
	h := m.holds[op.HoldID]
	switch {
	case h == nil:
		return fail(ledger.CodeHoldNotFound)
	case !allowed(op.Actor, h.merchant, h.store):
		return fail(ledger.CodeForbidden)
	case h.status != ledger.HoldActive:
		return fail(ledger.CodeHoldNotActive)
	case !m.now.Before(h.expires):
		return fail(ledger.CodeHoldExpired)
	}
	p := h.points
	if op.Points != nil {
		p = *op.Points
	}
	if p > h.points {
		return fail(ledger.CodeValidation)
	}
	mem := m.members[h.member]
	// A hold is a promise: its points were reserved against everything, so
	// its capture takes them even where a refund since has left the member
	// short; the shortfall is debt, as if the capture had come first.
	mem.held -= h.points
	latest := m.debit(mem, p, "")
	h.status = ledger.HoldCaptured
	s := m.stores[h.store]
	m.accounts[s.merchant.redeemed] += p
	m.record(&mTxn{id: id, typ: ledger.TxRedeem, member: mem.id, merchant: h.merchant, store: h.store, points: p, restore: latest,
		merchantValidity: s.merchant.validityDays, merchantIssued: s.merchant.issued, merchantRedeemed: s.merchant.redeemed})
	return expect{typ: ledger.TxRedeem, points: p, member: mem.id, ref: h.id, hold: h}
}

// release voids a hold, or expires it when its timeout has passed.
func (m *model) release(op ledger.Op, id string, to ledger.HoldStatus) expect {
	h := m.holds[op.HoldID]
	typ := ledger.TxHoldVoid
	if to == ledger.HoldExpired {
		// The sweeper's operation: nothing to do unless active and due.
		if h == nil || h.status != ledger.HoldActive || m.now.Before(h.expires) {
			return expect{noop: true}
		}
		typ = ledger.TxHoldExpire
	} else {
		switch {
		case h == nil:
			return fail(ledger.CodeHoldNotFound)
		case !allowed(op.Actor, h.merchant, h.store):
			return fail(ledger.CodeForbidden)
		case h.status != ledger.HoldActive:
			return fail(ledger.CodeHoldNotActive)
		}
	}
	mem := m.members[h.member]
	mem.held -= h.points
	h.status = to
	m.record(&mTxn{id: id, typ: typ, member: mem.id, merchant: h.merchant, store: h.store, points: h.points})
	return expect{typ: typ, points: h.points, member: mem.id, ref: h.id, hold: h}
}

func (m *model) cancel(op ledger.Op, id string) expect {
	o := m.txns[op.TransactionID]
	switch {
	case o == nil:
		return fail(ledger.CodeTransactionNotFound)
	case !allowed(op.Actor, o.merchant, o.store):
		return fail(ledger.CodeForbidden)
	case o.typ != ledger.TxEarn && o.typ != ledger.TxRedeem:
		return fail(ledger.CodeNotCancellable)
	}
	left := o.points - o.cancelledPoints
	amountAfter := o.cancelledAmount
	var p int64
	switch {
	case op.Points != nil:
		p = *op.Points
		if p > left {
			return fail(ledger.CodeCancelExceeds)
		}
	case op.PurchaseAmount != nil:
		if o.typ != ledger.TxEarn || o.amount == 0 {
			return fail(ledger.CodeValidation)
		}
		a := *op.PurchaseAmount
		if a > o.amount-o.cancelledAmount {
			return fail(ledger.CodeCancelExceeds)
		}
		amountAfter += a
		if amountAfter == o.amount {
			p = left // the last refund: exactly what is left
		} else {
			// floor(points × refunded ÷ purchase), never more than is left.
			q := new(big.Int).Mul(big.NewInt(o.points), big.NewInt(a))
			q.Quo(q, big.NewInt(o.amount))
			p = min(left, q.Int64())
		}
	default:
		fullyRefunded := o.typ == ledger.TxRedeem || o.cancelledAmount == o.amount
		if left == 0 && fullyRefunded {
			return fail(ledger.CodeCancelExceeds)
		}
		p = left
		if o.typ == ledger.TxEarn {
			amountAfter = o.amount
		}
	}
	// A merged member's transaction is refunded on the member it went into.
	mem := m.members[o.member]
	for mem.merged != "" {
		mem = m.members[mem.merged]
	}
	x := expect{points: p, member: mem.id, ref: o.id}
	if o.typ == ledger.TxEarn {
		// Policy: the points go back even if spent; the balance may go
		// below zero. The earn's own lot gives first.
		m.debit(mem, p, o.id)
		m.accounts[o.merchantIssued] += p
		x.typ, x.amount = ledger.TxCancelEarn, amountAfter-o.cancelledAmount
	} else {
		exp := o.restore
		if exp.IsZero() {
			exp = m.now.AddDate(0, 0, o.merchantValidity)
		}
		m.credit(mem, p, id, exp)
		m.accounts[o.merchantRedeemed] -= p
		x.typ = ledger.TxCancelRedeem
	}
	o.cancelledPoints += p
	o.cancelledAmount = amountAfter
	m.record(&mTxn{id: id, typ: x.typ, member: mem.id, merchant: o.merchant, store: o.store, points: p})
	return x
}

func (m *model) adjust(op ledger.Op, id string) expect {
	mem := m.members[op.MemberID]
	if mem == nil {
		return fail(ledger.CodeMemberNotFound)
	}
	if mem.merged != "" {
		return fail(ledger.CodeMemberMerged)
	}
	p := *op.Points
	if p > 0 {
		m.credit(mem, p, id, m.now.AddDate(0, 0, ledger.DefaultAdjustmentValidityDays))
	} else {
		if mem.balance-mem.held < -p {
			return fail(ledger.CodeInsufficientPoints)
		}
		m.debit(mem, -p, "")
	}
	m.accounts[ledger.AccountAdjustments] -= p
	m.record(&mTxn{id: id, typ: ledger.TxAdjust, member: mem.id, points: p})
	return expect{typ: ledger.TxAdjust, points: p, member: mem.id}
}

// merge moves one member into another (docs/api.md, "Merging members"):
// its whole balance, and its open lots as they are (points, remaining,
// expiry); a debt of the member merged into is paid from them first, a debt
// of the merged member is taken from the other's lots. The merged member
// ends with nothing and is merged; what was merged into it follows it.
func (m *model) merge(op ledger.Op, id string) expect {
	if op.MemberID == op.FromMemberID || op.Reason == "" {
		return fail(ledger.CodeValidation)
	}
	into, from := m.members[op.MemberID], m.members[op.FromMemberID]
	switch {
	case into == nil || from == nil:
		return fail(ledger.CodeMemberNotFound)
	case into.merged != "" || from.merged != "":
		return fail(ledger.CodeMemberMerged)
	case from.held > 0:
		return fail(ledger.CodeMergeRefused)
	}
	p := from.balance
	var kept []*mLot
	for _, l := range from.lots {
		if l.remaining > 0 {
			into.lots = append(into.lots, l)
		} else {
			kept = append(kept, l)
		}
	}
	from.lots = kept
	switch {
	case p > 0:
		left := min(max(0, -into.balance), p)
		for _, l := range sortedLots(into) {
			n := min(l.remaining, left)
			l.remaining -= n
			left -= n
		}
		into.balance += p
	case p < 0:
		m.debit(into, -p, "")
	}
	from.balance = 0
	from.merged = into.id
	for _, o := range m.members {
		if o.merged == from.id {
			o.merged = into.id
		}
	}
	m.record(&mTxn{id: id, typ: ledger.TxMerge, member: into.id, points: p})
	return expect{typ: ledger.TxMerge, points: p, member: into.id, ref: from.id}
}

// expireLots posts what is left of the member's due lots, except what active
// holds reserve.
func (m *model) expireLots(op ledger.Op, id string) expect {
	mem := m.members[op.MemberID]
	if mem == nil {
		return fail(ledger.CodeMemberNotFound)
	}
	x := min(m.dueOf(mem), mem.balance-mem.held)
	if x <= 0 {
		return expect{noop: true}
	}
	left := x
	for _, l := range sortedLots(mem) {
		if left == 0 {
			break
		}
		if l.expires.After(m.now) {
			continue
		}
		n := min(l.remaining, left)
		l.remaining -= n
		left -= n
	}
	mem.balance -= x
	m.accounts[ledger.AccountExpired] += x
	m.record(&mTxn{id: id, typ: ledger.TxExpire, member: mem.id, points: x})
	return expect{typ: ledger.TxExpire, points: x, member: mem.id}
}

func (m *model) dueOf(mem *mMember) int64 {
	var due int64
	for _, l := range mem.lots {
		if !l.expires.After(m.now) {
			due += l.remaining
		}
	}
	return due
}

// credit gives p points: a debt is paid first, the rest is a new lot.
func (m *model) credit(mem *mMember, p int64, id string, expires time.Time) {
	if p == 0 {
		return
	}
	debt := max(0, -mem.balance)
	mem.lots = append(mem.lots, &mLot{id: id, points: p, remaining: max(0, p-debt), expires: ledger.MicroTime(expires)})
	mem.balance += p
}

// debit takes p points: from the lot prefer first, then the lots that
// expire first; what the lots lack becomes debt. It returns the latest
// expiry of the lots it took from.
func (m *model) debit(mem *mMember, p int64, prefer string) time.Time {
	var latest time.Time
	left := p
	take := func(l *mLot) {
		n := min(l.remaining, left)
		if n <= 0 {
			return
		}
		l.remaining -= n
		left -= n
		if l.expires.After(latest) {
			latest = l.expires
		}
	}
	for _, l := range mem.lots {
		if prefer != "" && l.id == prefer {
			take(l)
		}
	}
	for _, l := range sortedLots(mem) {
		take(l)
	}
	mem.balance -= p
	return latest
}

func sortedLots(mem *mMember) []*mLot {
	lots := slices.Clone(mem.lots)
	slices.SortFunc(lots, func(a, b *mLot) int {
		if c := a.expires.Compare(b.expires); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return lots
}

// ---- the test driver ----

type modelTest struct {
	t     *testing.T
	e     *env
	r     *rand.Rand
	m     *model
	done  int
	n     int // counter for receipts and keys
	mer   []*mMerchant
	shops []*mStore
	mems  []*mMember
	keyed []keyedOp // successful operations with a key: what retries repeat
	count map[string]int
}

type keyedOp struct {
	op   ledger.Op
	body []byte
}

func newModelTest(t *testing.T, e *env, seed int64) *modelTest {
	mt := &modelTest{t: t, e: e, r: rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)), count: map[string]int{},
		m: &model{merchants: map[string]*mMerchant{}, stores: map[string]*mStore{}, members: map[string]*mMember{},
			txns: map[string]*mTxn{}, holds: map[string]*mHold{}, receipts: map[ledger.ReceiptKey]bool{},
			idem: map[ledger.IdemKey]mIdem{}, accounts: map[int64]int64{}}}
	for _, spec := range []struct {
		rate   int64
		days   int
		stores int
		cap    int64 // max_explicit_points: the model's explicit earns go up to 200
	}{{150, 7, 2, 150}, {500, 30, 1, 0}, {25, 3, 1, 1_000}} {
		lm := e.merchantCapped(spec.rate, spec.days, spec.cap)
		if got, err := e.raw.Merchant(e.ctx, lm.ID); err != nil || got.MaxExplicitPoints != spec.cap {
			e.t.Fatalf("merchant read back %+v %v; want max_explicit_points %d", got, err, spec.cap)
		}
		mm := &mMerchant{id: lm.ID, rateBP: spec.rate, validityDays: spec.days, maxExplicit: spec.cap, issued: lm.IssuedAccount,
			redeemed: lm.RedeemedAccount, receiptsByStore: map[string][]string{}, shop: lm, anyStore: pos(lm, "")}
		for range spec.stores {
			s := e.shop(lm)
			ms := &mStore{id: s.ID, merchant: mm, terminal: pos(lm, s.ID)}
			mm.stores = append(mm.stores, s.ID)
			mt.m.stores[s.ID] = ms
			mt.shops = append(mt.shops, ms)
		}
		mt.m.merchants[lm.ID] = mm
		mt.mer = append(mt.mer, mm)
	}
	for range 12 {
		lm := e.member()
		mm := &mMember{id: lm.ID, account: lm.AccountID}
		mt.m.members[lm.ID] = mm
		mt.mems = append(mt.mems, mm)
	}
	return mt
}

func (mt *modelTest) stats() string {
	keys := make([]string, 0, len(mt.count))
	for k := range mt.count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, mt.count[k]))
	}
	return strings.Join(parts, " ")
}

func (mt *modelTest) next() int { mt.n++; return mt.n }

func (mt *modelTest) chance(p float64) bool { return mt.r.Float64() < p }

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// step does one random thing.
func (mt *modelTest) step() {
	switch x := mt.r.IntN(100); {
	case x < 4:
		mt.advance()
	case x < 7:
		mt.concurrentRound()
	case x < 10:
		mt.burst()
	case x < 13 && len(mt.keyed) > 0:
		mt.retry()
	case x < 15 && len(mt.keyed) > 0:
		mt.reuseKey()
	case x < 17:
		mt.one(mt.oddOp())
	case x < 19:
		mt.one(mt.mergeOp(mt.member(), mt.member()))
	case x < 22:
		mt.promise()
	default:
		mt.one(mt.opFor(mt.member()))
	}
	mt.enoughMembers()
}

// member picks a member, mostly one that is not merged.
func (mt *modelTest) member() *mMember {
	for range 20 {
		if mem := pick(mt.r, mt.mems); mem.merged == "" || mt.chance(0.1) {
			return mem
		}
	}
	return pick(mt.r, mt.mems)
}

// mergeOp merges from into into: mostly two members, sometimes refused
// (into itself, a merged member, points held, no reason).
func (mt *modelTest) mergeOp(into, from *mMember) ledger.Op {
	op := ledger.Op{Kind: ledger.OpMerge, Actor: mt.e.admin, IdempotencyKey: mt.key(), MemberID: into.id, FromMemberID: from.id,
		Reason: "model merge"}
	if mt.chance(0.05) {
		op.Reason = ""
	}
	return op
}

// enoughMembers adds members while fewer than 10 are not merged, so that
// merges never leave the test with nobody to move points for. Merged
// members stay in play: what reaches them is refused, and refunds of their
// transactions reach the member they went into.
func (mt *modelTest) enoughMembers() {
	active := 0
	for _, mem := range mt.mems {
		if mem.merged == "" {
			active++
		}
	}
	for ; active < 10; active++ {
		lm := mt.e.member()
		mm := &mMember{id: lm.ID, account: lm.AccountID}
		mt.m.members[lm.ID] = mm
		mt.mems = append(mt.mems, mm)
		mt.count["member added"]++
	}
}

// one submits op and checks the answer against the model.
func (mt *modelTest) one(op ledger.Op) {
	mt.t.Helper()
	res, err := mt.e.submit(op)
	mt.check(op, res, err)
}

func txnID(res ledger.Result) string {
	if res.Transaction == nil {
		return ""
	}
	return res.Transaction.ID
}

// check applies op to the model and compares what it expects with what the
// ledger answered.
func (mt *modelTest) check(op ledger.Op, res ledger.Result, err error) {
	mt.t.Helper()
	mt.m.now = mt.e.clock.Now()
	x := mt.m.apply(op, txnID(res))
	mt.done++
	desc := func() string {
		return fmt.Sprintf("operation %d %s %+v (points %v, amount %v)", mt.done, op.Kind, op, deref(op.Points), deref(op.PurchaseAmount))
	}
	switch {
	case x.code != "":
		mt.count[string(op.Kind)+":"+x.code]++
		if err == nil {
			mt.t.Fatalf("%s: succeeded (%+v); the model refuses it with %s", desc(), res.Transaction, x.code)
		}
		if got := ledger.ErrorCode(err); got != x.code {
			mt.t.Fatalf("%s: refused with %v; the model refuses it with %s", desc(), err, x.code)
		}
		return
	case err != nil:
		mt.t.Fatalf("%s: %v; the model expects success", desc(), err)
	case x.replay:
		mt.count["replay"]++
		if !res.Replayed || !bytes.Equal(res.Body, x.body) {
			mt.t.Fatalf("%s: replayed=%v body\n%s\nthe model expects the replay of\n%s", desc(), res.Replayed, res.Body, x.body)
		}
		return
	case res.Replayed:
		mt.t.Fatalf("%s: replayed; the model expects a new operation", desc())
	case x.noop:
		mt.count[string(op.Kind)+":noop"]++
		if res.Transaction != nil {
			mt.t.Fatalf("%s: wrote %+v; the model expects nothing to do", desc(), res.Transaction)
		}
		return
	case res.Transaction == nil:
		mt.t.Fatalf("%s: succeeded without a transaction; the model expects a %s", desc(), x.typ)
	}
	mt.count[string(op.Kind)]++
	tx := res.Transaction
	if tx.Type != x.typ || tx.Points != x.points || tx.MemberID != x.member || tx.RefID != x.ref ||
		((x.typ == ledger.TxEarn || x.typ == ledger.TxCancelEarn) && tx.PurchaseAmount != x.amount) || !tx.CreatedAt.Equal(mt.m.now) {
		mt.t.Fatalf("%s: wrote %+v; the model expects a %s of %d points (amount %d, ref %q) for %s", desc(), tx, x.typ, x.points, x.amount, x.ref, x.member)
	}
	mem := mt.m.members[x.member]
	want := ledger.Balance{MemberID: mem.id, Balance: mem.balance, Held: mem.held, Available: mem.balance - mem.held}
	if res.Balance != want {
		mt.t.Fatalf("%s: answered balance %+v; the model has %+v", desc(), res.Balance, want)
	}
	if x.hold != nil && (res.Hold == nil || res.Hold.Status != x.hold.status || res.Hold.Points != x.hold.points || !res.Hold.ExpiresAt.Equal(x.hold.expires)) {
		mt.t.Fatalf("%s: answered hold %+v; the model has %+v", desc(), res.Hold, *x.hold)
	}
	mt.modelInvariants(mem)
	if mem.balance < 0 {
		mt.count["in debt after"]++
	}
	if x.fp != nil {
		mt.m.idem[x.key] = mIdem{fingerprint: x.fp, body: res.Body}
		mt.keyed = append(mt.keyed, keyedOp{op: op, body: res.Body})
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// modelInvariants catches a bug of the model itself: its lots must sum to
// its balance (to zero in debt).
func (mt *modelTest) modelInvariants(mem *mMember) {
	var sum int64
	for _, l := range mem.lots {
		if l.remaining < 0 || l.remaining > l.points {
			mt.t.Fatalf("model bug: lot %+v", *l)
		}
		sum += l.remaining
	}
	if sum != max(mem.balance, 0) {
		mt.t.Fatalf("model bug: member %s has balance %d, lots %d", mem.id, mem.balance, sum)
	}
}

func (mt *modelTest) actorAt(s *mStore) ledger.Actor {
	switch mt.r.IntN(3) {
	case 0:
		return s.terminal
	case 1:
		return s.merchant.anyStore
	}
	return mt.e.admin
}

func (mt *modelTest) key() string {
	if mt.chance(0.1) {
		return ""
	}
	return fmt.Sprintf("mk-%d", mt.next())
}

// amountFor picks points to take from a member: mostly affordable,
// sometimes one too many or far more.
func (mt *modelTest) amountFor(avail int64) int64 {
	switch {
	case avail > 0 && mt.chance(0.85):
		if mt.chance(0.3) {
			return avail
		}
		return 1 + mt.r.Int64N(avail)
	case mt.chance(0.5):
		return max(1, avail+1)
	}
	return max(1, avail) + 1 + mt.r.Int64N(100)
}

// opFor makes a random operation on one member, touching nothing of any
// other member.
func (mt *modelTest) opFor(mem *mMember) ledger.Op {
	avail := mem.balance - mem.held
	if mem.held > 0 && mt.chance(0.3) {
		if op, ok := mt.holdOp(mem); ok {
			return op
		}
	}
	switch x := mt.r.IntN(100); {
	case x < 35:
		return mt.earnOp(mem)
	case x < 50:
		s := pick(mt.r, mt.shops)
		return ledger.Op{Kind: ledger.OpRedeem, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id, StoreID: s.id,
			Receipt: fmt.Sprintf("rd-%d", mt.next()), Points: ptr(mt.amountFor(avail))}
	case x < 60:
		s := pick(mt.r, mt.shops)
		secs := pick(mt.r, []int64{0, 60, 900, 3600, 86400, 3 * 86400})
		return ledger.Op{Kind: ledger.OpHold, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id, StoreID: s.id,
			Points: ptr(mt.amountFor(avail)), HoldSeconds: secs}
	case x < 70:
		if op, ok := mt.holdOp(mem); ok {
			return op
		}
	case x < 88:
		if op, ok := mt.cancelOp(mem); ok {
			return op
		}
	case x < 96:
		if mt.chance(0.5) {
			return ledger.Op{Kind: ledger.OpAdjust, Actor: mt.e.admin, IdempotencyKey: mt.key(), MemberID: mem.id,
				Points: ptr(1 + mt.r.Int64N(200)), Reason: "model credit"}
		}
		return ledger.Op{Kind: ledger.OpAdjust, Actor: mt.e.admin, IdempotencyKey: mt.key(), MemberID: mem.id,
			Points: ptr(-mt.amountFor(avail)), Reason: "model debit"}
	default:
		return ledger.Op{Kind: ledger.OpExpireLots, MemberID: mem.id}
	}
	return mt.earnOp(mem)
}

func (mt *modelTest) earnOp(mem *mMember) ledger.Op {
	s := pick(mt.r, mt.shops)
	op := ledger.Op{Kind: ledger.OpEarn, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id, StoreID: s.id,
		Receipt: fmt.Sprintf("rc-%d", mt.next()), PurchaseAmount: ptr(mt.r.Int64N(20001))}
	if used := s.merchant.receiptsByStore[s.id]; len(used) > 0 && mt.chance(0.05) {
		op.Receipt = pick(mt.r, used) // already earned: refused
	}
	if mt.chance(0.15) {
		op.Points = ptr(mt.r.Int64N(300))
		if mt.chance(0.5) {
			op.PurchaseAmount = ptr(0)
		}
	}
	return op
}

func (mt *modelTest) holdOp(mem *mMember) (ledger.Op, bool) {
	if len(mem.holds) == 0 {
		return ledger.Op{}, false
	}
	// Mostly an active hold, sometimes any.
	var active []string
	for _, id := range mem.holds {
		if mt.m.holds[id].status == ledger.HoldActive {
			active = append(active, id)
		}
	}
	id := pick(mt.r, mem.holds)
	if len(active) > 0 && mt.chance(0.85) {
		id = pick(mt.r, active)
	}
	h := mt.m.holds[id]
	s := mt.m.stores[h.store]
	actor := mt.actorAt(s)
	if mt.chance(0.4) {
		return ledger.Op{Kind: ledger.OpVoid, Actor: actor, IdempotencyKey: mt.key(), HoldID: id}, true
	}
	op := ledger.Op{Kind: ledger.OpCapture, Actor: actor, IdempotencyKey: mt.key(), HoldID: id}
	switch mt.r.IntN(4) {
	case 0:
		op.Points = ptr(1 + mt.r.Int64N(h.points))
	case 1:
		op.Points = ptr(h.points + 1) // more than held: refused
	}
	return op, true
}

func (mt *modelTest) cancelOp(mem *mMember) (ledger.Op, bool) {
	if len(mem.txns) == 0 {
		return ledger.Op{}, false
	}
	var o *mTxn
	for range 5 { // prefer what can be cancelled
		o = mt.m.txns[pick(mt.r, mem.txns)]
		if (o.typ == ledger.TxEarn || o.typ == ledger.TxRedeem) && (o.points > o.cancelledPoints || mt.chance(0.1)) {
			break
		}
	}
	actor := mt.e.admin
	if o.store != "" {
		actor = mt.actorAt(mt.m.stores[o.store])
	}
	op := ledger.Op{Kind: ledger.OpCancel, Actor: actor, IdempotencyKey: mt.key(), TransactionID: o.id}
	left := o.points - o.cancelledPoints
	switch x := mt.r.IntN(10); {
	case x < 3: // in full
	case x < 6:
		if left > 0 && mt.chance(0.9) {
			op.Points = ptr(1 + mt.r.Int64N(left))
		} else {
			op.Points = ptr(max(1, left+1))
		}
	default:
		amountLeft := o.amount - o.cancelledAmount
		switch {
		case amountLeft > 0 && mt.chance(0.9):
			if mt.chance(0.25) {
				op.PurchaseAmount = ptr(amountLeft)
			} else {
				op.PurchaseAmount = ptr(1 + mt.r.Int64N(amountLeft))
			}
		default:
			op.PurchaseAmount = ptr(amountLeft + 1)
		}
	}
	return op, true
}

// oddOp makes a refusal of another kind: a terminal at another merchant, a
// missing member or hold, a transaction that is no earn or redemption.
func (mt *modelTest) oddOp() ledger.Op {
	mem := pick(mt.r, mt.mems)
	switch mt.r.IntN(5) {
	case 0:
		s := pick(mt.r, mt.shops)
		var other *mMerchant
		for other = pick(mt.r, mt.mer); other == s.merchant; other = pick(mt.r, mt.mer) {
		}
		return ledger.Op{Kind: ledger.OpEarn, Actor: other.anyStore, IdempotencyKey: mt.key(), MemberID: mem.id, StoreID: s.id,
			Receipt: fmt.Sprintf("rc-%d", mt.next()), PurchaseAmount: ptr(1000)}
	case 1:
		return ledger.Op{Kind: ledger.OpRedeem, Actor: mt.e.admin, IdempotencyKey: mt.key(), MemberID: ledger.NewID(),
			StoreID: pick(mt.r, mt.shops).id, Receipt: "x", Points: ptr(1)}
	case 2:
		return ledger.Op{Kind: ledger.OpCapture, Actor: mt.e.admin, IdempotencyKey: mt.key(), HoldID: ledger.NewID()}
	case 3:
		if len(mem.txns) > 0 {
			o := mt.m.txns[pick(mt.r, mem.txns)]
			if o.store != "" {
				// A store-bound terminal of another store, or the admin.
				var other *mStore
				for other = pick(mt.r, mt.shops); other.id == o.store && len(mt.shops) > 1; other = pick(mt.r, mt.shops) {
				}
				return ledger.Op{Kind: ledger.OpCancel, Actor: other.terminal, IdempotencyKey: mt.key(), TransactionID: o.id, Points: ptr(1)}
			}
			return ledger.Op{Kind: ledger.OpCancel, Actor: mt.e.admin, IdempotencyKey: mt.key(), TransactionID: o.id, Points: ptr(1)}
		}
	}
	if len(mem.holds) > 0 {
		return ledger.Op{Kind: ledger.OpExpireHold, HoldID: pick(mt.r, mem.holds)}
	}
	return ledger.Op{Kind: ledger.OpExpireLots, MemberID: mem.id}
}

// promise earns, holds part or all of what the member can spend, refunds
// the earn (in full, by points or by amount) while the hold is active,
// sometimes tries to spend in between, and captures the hold: the capture
// succeeds whatever the refund took, and the model says how deep the debt.
func (mt *modelTest) promise() {
	mt.t.Helper()
	mem, s := pick(mt.r, mt.mems), pick(mt.r, mt.shops)
	submit := func(op ledger.Op) ledger.Result {
		res, err := mt.e.submit(op)
		mt.check(op, res, err)
		if err != nil {
			return ledger.Result{}
		}
		return res
	}
	earn := submit(ledger.Op{Kind: ledger.OpEarn, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id,
		StoreID: s.id, Receipt: fmt.Sprintf("pe-%d", mt.next()), PurchaseAmount: ptr(1000 + mt.r.Int64N(20000))})
	avail := mem.balance - mem.held
	if earn.Transaction == nil || avail <= 0 {
		return
	}
	p := avail
	if mt.chance(0.5) {
		p = 1 + mt.r.Int64N(avail)
	}
	hold := submit(ledger.Op{Kind: ledger.OpHold, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id,
		StoreID: s.id, Points: ptr(p), HoldSeconds: 3600})
	if hold.Transaction == nil {
		return
	}
	o := mt.m.txns[earn.Transaction.ID]
	cancel := ledger.Op{Kind: ledger.OpCancel, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), TransactionID: o.id}
	switch mt.r.IntN(3) {
	case 1:
		if o.points > 0 {
			cancel.Points = ptr(1 + mt.r.Int64N(o.points))
		}
	case 2:
		cancel.PurchaseAmount = ptr(1 + mt.r.Int64N(o.amount))
	}
	submit(cancel)
	if mt.chance(0.3) { // refused while the refund has left the member short
		submit(ledger.Op{Kind: ledger.OpRedeem, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), MemberID: mem.id,
			StoreID: s.id, Receipt: fmt.Sprintf("pr-%d", mt.next()), Points: ptr(1)})
	}
	if mt.chance(0.2) {
		submit(ledger.Op{Kind: ledger.OpExpireLots, MemberID: mem.id})
	}
	capture := ledger.Op{Kind: ledger.OpCapture, Actor: mt.actorAt(s), IdempotencyKey: mt.key(), HoldID: hold.Transaction.ID}
	if mt.chance(0.4) {
		capture.Points = ptr(1 + mt.r.Int64N(p))
	}
	if mem.balance-(mem.held-p) < deref64(capture.Points, p) {
		mt.count["capture into debt"]++ // what was refused before holds were promises
	}
	submit(capture)
}

func deref64(p *int64, def int64) int64 {
	if p == nil {
		return def
	}
	return *p
}

// retry repeats a successful operation with its key: a replay.
func (mt *modelTest) retry() {
	k := pick(mt.r, mt.keyed)
	mt.one(k.op)
}

// reuseKey sends another request under a key already used: refused.
func (mt *modelTest) reuseKey() {
	op := pick(mt.r, mt.keyed).op
	op.Reason += "!" // part of the request, whatever the kind
	mt.one(op)
}

// advance moves the clock by minutes or days and mostly runs the expiry
// pass, either operation by operation or through ledger.ExpireDue.
func (mt *modelTest) advance() {
	if mt.chance(0.7) {
		mt.e.clock.Advance(time.Duration(1+mt.r.IntN(20)) * time.Minute)
	} else {
		mt.e.clock.Advance(time.Duration(1+mt.r.IntN(4))*24*time.Hour + time.Duration(mt.r.IntN(3600))*time.Second)
	}
	mt.m.now = mt.e.clock.Now()
	if mt.chance(0.3) {
		return
	}
	mt.compareDue()
	if mt.chance(0.5) {
		mt.expireOneByOne()
		return
	}
	// Through ExpireDue: predict its counts, then apply the same to the model.
	var holds, lots int
	for _, h := range mt.dueHolds() {
		mt.m.apply(ledger.Op{Kind: ledger.OpExpireHold, HoldID: h}, "")
		holds++
	}
	for _, mem := range mt.mems {
		if x := mt.m.apply(ledger.Op{Kind: ledger.OpExpireLots, MemberID: mem.id}, ""); !x.noop {
			lots++
		}
	}
	st := mt.e.expireDue()
	if st.Holds != holds || st.LotMembers != lots || st.Failed != 0 {
		mt.t.Fatalf("expiry pass at %s: %+v; the model expects %d holds and %d members", mt.m.now, st, holds, lots)
	}
	mt.done += holds + lots
	mt.count["expiry pass"]++
}

func (mt *modelTest) expireOneByOne() {
	for _, h := range mt.dueHolds() {
		mt.one(ledger.Op{Kind: ledger.OpExpireHold, HoldID: h})
	}
	due, err := mt.e.raw.DueLotMembers(mt.e.ctx, mt.m.now, 1000)
	if err != nil {
		mt.t.Fatal(err)
	}
	for _, id := range due {
		mt.one(ledger.Op{Kind: ledger.OpExpireLots, MemberID: id})
	}
}

func (mt *modelTest) dueHolds() []string {
	var ids []string
	for id, h := range mt.m.holds {
		if h.status == ledger.HoldActive && !h.expires.After(mt.m.now) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// dueMembers lists the members with due lots that an expiry can take from
// now: those whose points are all reserved by holds are not listed.
func (mt *modelTest) dueMembers() []string {
	var ids []string
	for _, mem := range mt.mems {
		if mem.balance <= mem.held {
			continue
		}
		for _, l := range mem.lots {
			if l.remaining > 0 && !l.expires.After(mt.m.now) {
				ids = append(ids, mem.id)
				break
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// compareDue checks the store's lists of what is due against the model.
func (mt *modelTest) compareDue() {
	mt.t.Helper()
	holds, err := mt.e.raw.DueHolds(mt.e.ctx, mt.m.now, 1000)
	if err != nil {
		mt.t.Fatal(err)
	}
	slices.Sort(holds)
	if want := mt.dueHolds(); !slices.Equal(holds, want) {
		mt.t.Fatalf("due holds at %s: %v; the model has %v", mt.m.now, holds, want)
	}
	members, err := mt.e.raw.DueLotMembers(mt.e.ctx, mt.m.now, 1000)
	if err != nil {
		mt.t.Fatal(err)
	}
	slices.Sort(members)
	if want := mt.dueMembers(); !slices.Equal(members, want) {
		mt.compareMembers() // says more, if the lots differ
		mt.t.Fatalf("due lot members at %s: %v; the model has %v", mt.m.now, members, want)
	}
}

// concurrentRound submits one operation for each of a few members at once,
// plus sometimes a retry racing its original, and applies them to the model
// in the order of the sequence numbers the ledger gave them.
func (mt *modelTest) concurrentRound() {
	mt.t.Helper()
	k := 2 + mt.r.IntN(7)
	order := mt.r.Perm(len(mt.mems))[:k]
	var ops []ledger.Op
	for _, i := range order {
		ops = append(ops, mt.opFor(mt.mems[i]))
	}
	if op := ops[0]; op.IdempotencyKey != "" && mt.chance(0.4) {
		ops = append(ops, op) // the same request twice at once: applied once
	}
	var results []ledger.Result
	var errs []error
	if mt.chance(0.5) {
		results, errs = mt.e.concurrently(ops)
		mt.count["round in one batch"]++
	} else {
		results, errs = make([]ledger.Result, len(ops)), make([]error, len(ops))
		var wg sync.WaitGroup
		for i, op := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = mt.e.submit(op)
			}()
		}
		wg.Wait()
		mt.count["round as it comes"]++
	}
	// Applied operations in ledger order first, then the rest (refusals and
	// replays, whose outcome no longer depends on the order).
	idx := make([]int, len(ops))
	for i := range idx {
		idx[i] = i
	}
	seqOf := func(i int) int64 {
		if errs[i] == nil && !results[i].Replayed && results[i].Transaction != nil {
			return results[i].Transaction.Seq
		}
		return 1 << 62
	}
	slices.SortStableFunc(idx, func(a, b int) int { return int(seqOf(a) - seqOf(b)) })
	for _, i := range idx {
		mt.check(ops[i], results[i], errs[i])
	}
}

// burst sends many operations on one or two members in ONE batch, in a
// known order (retries and reused keys among them): the batch applies them
// one after the other on its in-memory state, and so does the model.
func (mt *modelTest) burst() {
	mt.t.Helper()
	members := []*mMember{pick(mt.r, mt.mems)}
	if mt.chance(0.4) {
		members = append(members, pick(mt.r, mt.mems))
	}
	var ops []ledger.Op
	for range 3 + mt.r.IntN(8) {
		mem := pick(mt.r, members)
		switch {
		case len(ops) > 0 && mt.chance(0.1):
			ops = append(ops, pick(mt.r, ops)) // a retry, or a repeat without a key
		case len(ops) > 0 && mt.chance(0.05):
			op := pick(mt.r, ops)
			op.Reason += "?" // another request under the same key
			ops = append(ops, op)
		case len(members) == 2 && members[0] != members[1] && mt.chance(0.08):
			// A merge amid the burst: what follows it on the merged member
			// is refused, refunds of its transactions reach the other. (Not
			// one the writer refuses before queueing it, which a burst
			// cannot wait for.)
			op := mt.mergeOp(members[0], members[1])
			op.Reason = "model merge in a burst"
			ops = append(ops, op)
		default:
			ops = append(ops, mt.opFor(mem))
		}
	}
	results, errs := mt.e.concurrently(ops)
	for i, op := range ops {
		mt.check(op, results[i], errs[i])
	}
	mt.count["burst in one batch"]++
}

// compareMembers compares every member's balance, held points and lots
// with the model.
func (mt *modelTest) compareMembers() {
	mt.t.Helper()
	ctx := mt.e.ctx
	for _, mem := range mt.mems {
		b, err := mt.e.raw.Balance(ctx, mem.id)
		if err != nil {
			mt.t.Fatal(err)
		}
		if want := (ledger.Balance{MemberID: mem.id, Balance: mem.balance, Held: mem.held, Available: mem.balance - mem.held}); b != want {
			mt.t.Fatalf("after %d operations member %s has %+v; the model has %+v", mt.done, mem.id, b, want)
		}
		lots, err := mt.e.raw.MemberLots(ctx, mem.id)
		if err != nil {
			mt.t.Fatal(err)
		}
		var want []ledger.Lot
		for _, l := range sortedLots(mem) {
			if l.remaining > 0 {
				want = append(want, ledger.Lot{ID: l.id, MemberID: mem.id, Points: l.points, Remaining: l.remaining, ExpiresAt: l.expires})
			}
		}
		same := len(lots) == len(want)
		for i := 0; same && i < len(lots); i++ {
			g, w := lots[i], want[i]
			same = g.ID == w.ID && g.MemberID == w.MemberID && g.Points == w.Points && g.Remaining == w.Remaining && g.ExpiresAt.Equal(w.ExpiresAt)
		}
		if !same {
			mt.t.Fatalf("after %d operations member %s has lots\n%s\nthe model has\n%s", mt.done, mem.id, fmtLots(lots), fmtLots(want))
		}
	}
}

// compareAll compares every member, hold and cancellable transaction, and
// the non-member accounts, with the model.
func (mt *modelTest) compareAll() {
	mt.t.Helper()
	mt.compareMembers()
	ctx := mt.e.ctx
	mt.m.now = mt.e.clock.Now()
	for id, h := range mt.m.holds {
		got, err := mt.e.raw.Hold(ctx, id)
		if err != nil {
			mt.t.Fatal(err)
		}
		if got.Status != h.status || got.Points != h.points || got.MemberID != h.member || !got.ExpiresAt.Equal(h.expires) {
			mt.t.Fatalf("hold %s is %+v; the model has %+v", id, got, *h)
		}
	}
	for id, o := range mt.m.txns {
		if o.typ != ledger.TxEarn && o.typ != ledger.TxRedeem {
			continue
		}
		got, err := mt.e.raw.Transaction(ctx, id)
		if err != nil {
			mt.t.Fatal(err)
		}
		if got.CancelledPoints != o.cancelledPoints || got.CancelledAmount != o.cancelledAmount || got.Points != o.points {
			mt.t.Fatalf("transaction %s records %d points, %d/%d cancelled; the model has %d, %d/%d",
				id, got.Points, got.CancelledPoints, got.CancelledAmount, o.points, o.cancelledPoints, o.cancelledAmount)
		}
	}
	accounts := mt.e.accountBalances()
	for id, want := range mt.m.accounts {
		if accounts[id] != want {
			mt.t.Fatalf("account %d has %d; the model has %d", id, accounts[id], want)
		}
	}
	for _, mer := range mt.mer {
		for _, id := range []int64{mer.issued, mer.redeemed} {
			if accounts[id] != mt.m.accounts[id] {
				mt.t.Fatalf("merchant account %d has %d; the model has %d", id, accounts[id], mt.m.accounts[id])
			}
		}
	}
	mt.compareDue()
	mt.count["full comparison"]++
	if mt.count["full comparison"]%4 == 0 {
		mt.e.mustBeSound()
		if mt.t.Failed() {
			mt.t.FailNow()
		}
	}
}
