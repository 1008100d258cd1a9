package surge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Outcomes of an operation.
const (
	outAcked      = "acked"      // 201, new or replayed
	outRefused    = "refused"    // a definitive 4xx: nothing was written
	outUnresolved = "unresolved" // no definitive answer after all retries
)

// op is one POS operation surge sent, with what its own model expects of it.
type op struct {
	Kind     string // earn, redeem, hold, capture, void, cancel_earn, cancel_redeem
	Member   *member
	Path     string
	Key      string // POS key it was sent with
	Idem     string
	Body     []byte
	Receipt  string
	WantType string
	WantPts  int64
	Delta    int64 // on the member's balance when acknowledged
	HeldD    int64 // on the member's held points when acknowledged

	Outcome   string
	Code      string // the refusal's code
	Status    int
	Attempts  int
	Replayed  bool
	TxnID     string
	GotType   string
	GotPoints int64
	GotMember string
	HoldID    string
	Retried   bool // needed more than one attempt
}

type member struct {
	id     string
	approx atomic.Int64 // acknowledged available points, for choosing amounts
}

type storeFx struct {
	id       string
	merchant *merchantFx
	posKey   string
}

type merchantFx struct {
	id     string
	rateBP int64
}

// workload drives the POS and app traffic and keeps the record.
type workload struct {
	cfg    *Config
	runID  string
	c      *client
	tl     *timeline
	admin  string
	stores []*storeFx
	pol    retryPolicy
	start  time.Time // when the load began
	appKey string    // the member app backend's key: badges and notices

	noticesETag atomic.Value // string: what the app kept of GET /v1/notices

	mu      sync.Mutex
	members []*member // active (signed up) members
	ops     []*op
	seq     atomic.Int64
	memSeq  atomic.Int64
	phoneNS int64

	inFlight  atomic.Int64
	wg        sync.WaitGroup
	acked     atomic.Int64
	refused   atomic.Int64
	unres     atomic.Int64
	signupErr atomic.Int64
}

func (w *workload) nextID(kind string) string {
	return fmt.Sprintf("surge-%s-%s-%d", w.runID, kind, w.seq.Add(1))
}

func (w *workload) pickMember(rng *rand.Rand) *member {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.members[rng.IntN(len(w.members))]
}

func (w *workload) memberCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.members)
}

func (w *workload) record(o *op) {
	w.mu.Lock()
	w.ops = append(w.ops, o)
	w.mu.Unlock()
}

// send posts o with the POS retry rules and records the outcome.
func (w *workload) send(ctx context.Context, o *op) {
	w.record(o)
	w.tl.update(func(s *second) { s.Offered++ })
	a, n, err := w.c.post(ctx, o.Path, o.Key, o.Idem, o.Body, w.pol, func(a answer) { w.tl.attempt(a, false) })
	o.Attempts = n
	o.Retried = n > 1
	w.settle(o, a, err)
}

func (w *workload) settle(o *op, a answer, err error) {
	o.Status, o.Code = a.status, a.code
	switch {
	case err != nil:
		o.Outcome = outUnresolved
		w.unres.Add(1)
		return
	case a.status == http.StatusCreated:
		var r struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Points   int64  `json:"points"`
			MemberID string `json:"member_id"`
			Hold     *struct {
				ID string `json:"id"`
			} `json:"hold"`
		}
		if json.Unmarshal(a.body, &r) != nil || r.ID == "" {
			o.Outcome, o.Code = outUnresolved, "unreadable 201"
			w.unres.Add(1)
			return
		}
		o.Outcome, o.Replayed, o.TxnID, o.GotType, o.GotPoints, o.GotMember = outAcked, a.replayed, r.ID, r.Type, r.Points, r.MemberID
		if r.Hold != nil {
			o.HoldID = r.Hold.ID
		}
		w.acked.Add(1)
		o.Member.approx.Add(o.Delta - o.HeldD)
		w.tl.update(func(s *second) {
			s.Served++
			s.Acked++
			if o.Kind == "earn" {
				s.Earns++
			}
		})
	default:
		o.Outcome = outRefused
		w.refused.Add(1)
		w.tl.update(func(s *second) { s.Served++ })
	}
}

// resolve asks again, after the run, for every operation left unresolved:
// a POS that lost its answer asks again with the same key once the server
// is back. What is still open after that stays a discrepancy.
func (w *workload) resolve(ctx context.Context) {
	w.mu.Lock()
	var open []*op
	for _, o := range w.ops {
		if o.Outcome == outUnresolved && o.Code != "unreadable 201" {
			open = append(open, o)
		}
	}
	w.mu.Unlock()
	pol := retryPolicy{maxAttempts: 10, maxTotal: 60 * time.Second}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, o := range open {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a, n, err := w.c.post(ctx, o.Path, o.Key, o.Idem, o.Body, pol, nil)
			o.Attempts += n
			o.Retried = true
			w.unres.Add(-1)
			w.settle(o, a, err)
		})
	}
	wg.Wait()
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// session runs one POS arrival: an operation and, sometimes, what follows
// it at the counter (a refund, the capture or void of a hold).
func (w *workload) session(ctx context.Context, rng *rand.Rand) {
	st := w.pickStore(rng, time.Since(w.start))
	m := w.pickMember(rng)
	mix := w.cfg.shape.Mix
	x := rng.Float64() * (mix.Earn + mix.Redeem + mix.Hold)
	avail := m.approx.Load()
	switch {
	case x < mix.Earn || avail < 10:
		w.earnFlow(ctx, rng, st, m)
	case x < mix.Earn+mix.Redeem:
		w.redeemFlow(ctx, rng, st, m, avail)
	default:
		w.holdFlow(ctx, rng, st, m, avail)
	}
}

func (w *workload) earnFlow(ctx context.Context, rng *rand.Rand, st *storeFx, m *member) {
	amount := 1000 + rng.Int64N(99_000)
	rcpt := w.nextID("r")
	pts := amount * st.merchant.rateBP / 10_000
	o := &op{Kind: "earn", Member: m, Path: "/v1/earns", Key: st.posKey, Idem: rcpt + "-earn", Receipt: rcpt,
		WantType: "earn", WantPts: pts, Delta: pts,
		Body: jsonBody(map[string]any{"member_id": m.id, "store_id": st.id, "receipt": rcpt, "purchase_amount": amount})}
	w.send(ctx, o)
	if o.Outcome != outAcked || ctx.Err() != nil {
		return
	}
	y := rng.Float64()
	switch {
	case y < 0.08: // a partial refund, sometimes followed by the rest
		a := 1 + rng.Int64N(amount-1)
		p := min(pts, pts*a/amount)
		c := w.cancel(ctx, st, m, o, "cancel_earn", map[string]any{"transaction_id": o.TxnID, "purchase_amount": a}, p)
		if c.Outcome == outAcked && rng.IntN(2) == 0 {
			w.cancel(ctx, st, m, o, "cancel_earn", map[string]any{"transaction_id": o.TxnID}, pts-p)
		}
	case y < 0.12: // a full refund
		w.cancel(ctx, st, m, o, "cancel_earn", map[string]any{"transaction_id": o.TxnID}, pts)
	}
}

func (w *workload) cancel(ctx context.Context, st *storeFx, m *member, orig *op, kind string, body map[string]any, want int64) *op {
	sign := int64(-1)
	if kind == "cancel_redeem" {
		sign = 1
	}
	c := &op{Kind: kind, Member: m, Path: "/v1/cancellations", Key: st.posKey, Idem: w.nextID("cancel"),
		WantType: kind, WantPts: want, Delta: sign * want, Body: jsonBody(body)}
	w.send(ctx, c)
	return c
}

func (w *workload) redeemFlow(ctx context.Context, rng *rand.Rand, st *storeFx, m *member, avail int64) {
	pts := 1 + rng.Int64N(min(500, avail/2))
	rcpt := w.nextID("r")
	o := &op{Kind: "redeem", Member: m, Path: "/v1/redemptions", Key: st.posKey, Idem: rcpt + "-redeem", Receipt: rcpt,
		WantType: "redeem", WantPts: pts, Delta: -pts,
		Body: jsonBody(map[string]any{"member_id": m.id, "store_id": st.id, "receipt": rcpt, "points": pts})}
	w.send(ctx, o)
	if o.Outcome != outAcked || ctx.Err() != nil || rng.Float64() >= 0.10 {
		return
	}
	if pts >= 2 && rng.IntN(2) == 0 {
		p := 1 + rng.Int64N(pts-1)
		c := w.cancel(ctx, st, m, o, "cancel_redeem", map[string]any{"transaction_id": o.TxnID, "points": p}, p)
		if c.Outcome == outAcked && rng.IntN(2) == 0 {
			w.cancel(ctx, st, m, o, "cancel_redeem", map[string]any{"transaction_id": o.TxnID}, pts-p)
		}
		return
	}
	w.cancel(ctx, st, m, o, "cancel_redeem", map[string]any{"transaction_id": o.TxnID}, pts)
}

func (w *workload) holdFlow(ctx context.Context, rng *rand.Rand, st *storeFx, m *member, avail int64) {
	pts := 1 + rng.Int64N(min(500, avail/2))
	o := &op{Kind: "hold", Member: m, Path: "/v1/holds", Key: st.posKey, Idem: w.nextID("hold"),
		WantType: "hold", WantPts: pts, HeldD: pts,
		Body: jsonBody(map[string]any{"member_id": m.id, "store_id": st.id, "points": pts})}
	w.send(ctx, o)
	if o.Outcome != outAcked || o.HoldID == "" {
		return
	}
	// The customer decides at the counter.
	select {
	case <-time.After(time.Duration(20+rng.IntN(300)) * time.Millisecond):
	case <-ctx.Done():
	}
	if rng.Float64() < 0.7 {
		c := pts
		body := map[string]any{}
		if rng.IntN(2) == 0 {
			c = 1 + rng.Int64N(pts)
			body["points"] = c
		}
		w.send(ctx, &op{Kind: "capture", Member: m, Path: "/v1/holds/" + o.HoldID + "/capture", Key: st.posKey,
			Idem: w.nextID("capture"), WantType: "redeem", WantPts: c, Delta: -c, HeldD: -pts, Body: jsonBody(body)})
		return
	}
	w.send(ctx, &op{Kind: "void", Member: m, Path: "/v1/holds/" + o.HoldID + "/void", Key: st.posKey,
		Idem: w.nextID("void"), WantType: "hold_void", WantPts: pts, HeldD: -pts, Body: []byte("{}")})
}

// read is one member-app arrival: the badge poll ("anything new for
// me?", 40 %; when there is, half the members open the notices and mark
// them seen), the notices list asked with the ETag the app kept (15 %),
// the balance (25 %) or the first page of history (20 %). The app's
// backend reads badges and notices with its app key; balance and history
// with a POS key, as the member's own session would need a login code.
func (w *workload) read(ctx context.Context, rng *rand.Rand) {
	m := w.pickMember(rng)
	st := w.stores[rng.IntN(len(w.stores))]
	switch x := rng.Float64(); {
	case x < 0.40:
		a := w.appRead(ctx, http.MethodGet, "/v1/members/"+m.id+"/badges", w.appKey, nil)
		if a.status == http.StatusOK && bytes.Contains(a.body, []byte(`"new":true`)) && rng.IntN(2) == 0 {
			w.appRead(ctx, http.MethodGet, "/v1/notices", w.appKey, nil)
			w.appRead(ctx, http.MethodPost, "/v1/members/"+m.id+"/badges/seen", w.appKey, []byte("{}"))
		}
	case x < 0.55:
		etag, _ := w.noticesETag.Load().(string)
		a := w.appReadIf(ctx, "/v1/notices", w.appKey, etag)
		if e := a.header.Get("ETag"); a.status == http.StatusOK && e != "" {
			w.noticesETag.Store(e)
		}
	case x < 0.80:
		w.appRead(ctx, http.MethodGet, "/v1/members/"+m.id+"/balance", st.posKey, nil)
	default:
		w.appRead(ctx, http.MethodGet, "/v1/members/"+m.id+"/transactions?limit=20", st.posKey, nil)
	}
}

// appRead sends one member-app request (a single attempt) and counts it.
func (w *workload) appRead(ctx context.Context, method, path, key string, body []byte) answer {
	w.tl.update(func(s *second) { s.ReadsOff++ })
	a := w.c.do(ctx, method, path, key, "", body)
	w.countRead(a)
	return a
}

func (w *workload) appReadIf(ctx context.Context, path, key, etag string) answer {
	w.tl.update(func(s *second) { s.ReadsOff++ })
	a := w.c.doIf(ctx, http.MethodGet, path, key, "", nil, etag)
	w.countRead(a)
	return a
}

func (w *workload) countRead(a answer) {
	w.tl.attempt(a, true)
	if a.err == nil && (a.status == http.StatusOK || a.status == http.StatusNotModified) {
		w.tl.update(func(s *second) { s.Reads++ })
	}
}

// publishNotice publishes the notice of rush i: the red badge whose
// stampede the rush rehearses. It ends by itself an hour after the run.
func (w *workload) publishNotice(ctx context.Context, i int, r Rush) error {
	body := map[string]any{
		"title":        fmt.Sprintf("surge-%s notice %d", w.runID, i),
		"body":         "A rehearsal's notice: the badge that sends every member to look.",
		"ramp_seconds": int(r.NoticeRamp.Seconds()),
		"ends_at":      time.Now().Add(w.cfg.Duration + time.Hour).UTC().Format(time.RFC3339),
	}
	a, _, err := w.c.post(ctx, "/v1/notices", w.admin, fmt.Sprintf("surge-%s-notice-%d", w.runID, i), jsonBody(body),
		retryPolicy{maxAttempts: 5, maxTotal: 20 * time.Second}, nil)
	if err != nil || a.status != http.StatusCreated {
		return fmt.Errorf("publish notice: HTTP %d %v %s", a.status, a.err, bytes.TrimSpace(a.body))
	}
	return nil
}

// signup creates one more synthetic member (launch profile).
func (w *workload) signup(ctx context.Context) error {
	n := w.memSeq.Add(1)
	body := jsonBody(map[string]any{"phone": fmt.Sprintf("+491%05d%06d", w.phoneNS, n), "name": fmt.Sprintf("surge-%s member %d", w.runID, n)})
	pol := retryPolicy{maxAttempts: 10, maxTotal: 60 * time.Second}
	a, _, err := w.c.post(ctx, "/v1/members", w.admin, fmt.Sprintf("surge-%s-member-%d", w.runID, n), body, pol, nil)
	if err != nil || a.status != http.StatusCreated {
		w.signupErr.Add(1)
		return fmt.Errorf("create member %d: HTTP %d %v %s", n, a.status, a.err, a.body)
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(a.body, &r); err != nil || r.ID == "" {
		return fmt.Errorf("create member %d: %s", n, a.body)
	}
	w.mu.Lock()
	w.members = append(w.members, &member{id: r.ID})
	w.mu.Unlock()
	return nil
}

// rateAt is the POS arrival rate at offset t of the run: --rate, times the
// profile's growth, times (on a trading day) the share of stores open and
// the peaks of the hour.
func (w *workload) rateAt(t time.Duration) float64 {
	sh := &w.cfg.shape
	f := float64(t) / float64(w.cfg.Duration)
	r := w.cfg.Rate * sh.growth(f)
	if d := sh.Day; d != nil {
		c := d.clockAt(f)
		r *= d.openShare(c, len(w.stores)) * d.peakFactor(c)
	}
	return r
}

// readRateAt is the member-app read rate: ReadsPerPOS reads per POS arrival,
// multiplied during a rush.
func (w *workload) readRateAt(t time.Duration) float64 {
	return w.rateAt(t) * w.cfg.shape.readFactor(t, w.cfg.Duration)
}

// membersAt is how many members should have signed up at offset t: all of
// them from the start, unless the profile grows, when MembersFrom of them
// start and the rest follow the growth curve.
func (w *workload) membersAt(t time.Duration) int {
	sh := &w.cfg.shape
	if sh.Growth != "exponential" || sh.GrowthFrom >= 1 {
		return w.cfg.Members
	}
	f := float64(t) / float64(w.cfg.Duration)
	initial := min(max(int(float64(w.cfg.Members)*sh.MembersFrom), 5), w.cfg.Members)
	return initial + int(float64(w.cfg.Members-initial)*(sh.growth(f)-sh.GrowthFrom)/(1-sh.GrowthFrom))
}

// pickStore chooses the store of a POS arrival: on a trading day, one of
// those open at the moment.
func (w *workload) pickStore(rng *rand.Rand, t time.Duration) *storeFx {
	d := w.cfg.shape.Day
	if d == nil {
		return w.stores[rng.IntN(len(w.stores))]
	}
	c := d.clockAt(float64(t) / float64(w.cfg.Duration))
	n := len(w.stores)
	var open []*storeFx
	for i, st := range w.stores {
		if o, cl := d.storeHours(i, n); c >= o && c < cl {
			open = append(open, st)
		}
	}
	if len(open) == 0 { // the rate is 0 then; an arrival already drawn still goes somewhere
		return w.stores[rng.IntN(n)]
	}
	return open[rng.IntN(len(open))]
}

// arrivals runs an open-loop Poisson process at rate(t) until the run ends:
// each arrival starts fn in its own goroutine whatever the server's speed,
// up to MaxInFlight at once (beyond, the arrival is counted as saturated).
func (w *workload) arrivals(ctx context.Context, start time.Time, rng *rand.Rand, rate func(time.Duration) float64,
	fn func(context.Context, *rand.Rand)) {
	next := time.Now()
	for {
		t := time.Since(start)
		if t >= w.cfg.Duration || ctx.Err() != nil {
			return
		}
		r := rate(t)
		if r <= 0 { // every store closed: no arrivals; look again shortly
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			next = time.Now()
			continue
		}
		next = next.Add(time.Duration(rng.ExpFloat64() / r * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			timer := time.NewTimer(d)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
		if time.Since(start) >= w.cfg.Duration {
			return
		}
		if w.inFlight.Load() >= int64(w.cfg.MaxInFlight) {
			w.tl.update(func(s *second) { s.Saturated++ })
			continue
		}
		seed := rng.Uint64()
		w.inFlight.Add(1)
		w.wg.Go(func() {
			defer w.inFlight.Add(-1)
			fn(ctx, rand.New(rand.NewPCG(seed, 7)))
		})
	}
}
