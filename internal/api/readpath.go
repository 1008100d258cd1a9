package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// The read path (docs/design.md "The read path"): member profiles,
// balances, stores, merchants and what badges need are read through caches
// (internal/cache); notices are served from the in-memory board. Every
// ledger batch invalidates the members it changed before any caller is
// answered, so a member's next read after a 201 reflects it, on any
// instance when the caches share Redis.

// Cache names, as metrics label them.
const (
	cacheMembers   = "members"
	cacheBalances  = "balances"
	cacheStores    = "stores"
	cacheMerchants = "merchants"
	cacheActivity  = "member_activity"
	cacheSeen      = "badges_seen"
)

// CacheNames lists the read path's caches (for metrics).
var CacheNames = []string{cacheMembers, cacheBalances, cacheStores, cacheMerchants, cacheActivity, cacheSeen}

// readPath is the server's caches and notice board.
type readPath struct {
	members   *cache.Cache[ledger.Member]
	balances  *cache.Cache[ledger.Balance]
	stores    *cache.Cache[ledger.StoreInfo]
	merchants *cache.Cache[ledger.Merchant]
	activity  *cache.Cache[memberActivity]
	seen      *cache.Cache[int64] // µs since the epoch; 0: never
	notices   notice.Store        // nil: notices and badges are not served
	board     *notice.Board
	shared    *cache.Shared
	seenQ     *seenWriter
}

// memberActivity is what a badge needs of a member, cached as one value:
// the merchants they belong to, active holds and lots with points left.
type memberActivity struct {
	Merchants []string      `json:"merchants"`
	Holds     []notice.Hold `json:"holds"`
	Lots      []lotExpiry   `json:"lots"`
}

type lotExpiry struct {
	Remaining int64     `json:"remaining"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) initReadPath() {
	o := func(name string, ttl, stale, local time.Duration) cache.Options {
		opts := cache.Options{Name: name, TTL: ttl, Stale: stale, Shared: s.cfg.Shared, LocalTTL: local, Logger: s.log}
		if s.metrics != nil { // a nil *Metrics must not hide in the interface
			opts.Observer = s.metrics
		}
		return opts
	}
	st := s.store
	rp := &readPath{shared: s.cfg.Shared}
	// Directory rows change rarely (creation, and the operators' and
	// members' own changes, which invalidate them: directory.go,
	// operator.go, me.go): long TTLs, and local copies may be kept even
	// when shared. A member holds personal data (the phone, opened): it
	// never goes to Redis in clear, only its invalidations do.
	mo := o(cacheMembers, time.Minute, 5*time.Minute, 10*time.Second)
	mo.LocalOnly = true
	rp.members = cache.New(mo,
		func(ctx context.Context, id string) (ledger.Member, error) { return st.Member(ctx, id) })
	rp.stores = cache.New(o(cacheStores, time.Minute, 5*time.Minute, 10*time.Second),
		func(ctx context.Context, id string) (ledger.StoreInfo, error) { return st.StoreInfo(ctx, id) })
	rp.merchants = cache.New(o(cacheMerchants, time.Minute, 5*time.Minute, 10*time.Second),
		func(ctx context.Context, id string) (ledger.Merchant, error) { return st.Merchant(ctx, id) })
	// Balances and activity change with every ledger write: the writer
	// invalidates them; shared, no local copy (read-your-writes on every
	// instance). The TTL only bounds what a write made elsewhere without
	// invalidation (several instances without Redis) can leave stale.
	rp.balances = cache.New(o(cacheBalances, 5*time.Second, 25*time.Second, 0),
		func(ctx context.Context, id string) (ledger.Balance, error) { return st.Balance(ctx, id) })

	if ns := s.cfg.Notices; ns != nil {
		rp.notices = ns
	} else if ns, ok := s.store.(notice.Store); ok {
		rp.notices = ns
	}
	if rp.notices != nil {
		ns := rp.notices
		rp.board = notice.NewBoard(ns, time.Now, s.log)
		rp.activity = cache.New(o(cacheActivity, time.Minute, 5*time.Minute, 0),
			func(ctx context.Context, id string) (memberActivity, error) {
				if _, err := rp.members.Get(ctx, id); err != nil {
					return memberActivity{}, err
				}
				act, err := ns.MemberActivity(ctx, id)
				if err != nil {
					return memberActivity{}, err
				}
				lots, err := st.MemberLots(ctx, id)
				if err != nil {
					return memberActivity{}, err
				}
				out := memberActivity{Merchants: act.Merchants, Holds: act.Holds, Lots: make([]lotExpiry, 0, len(lots))}
				for _, l := range lots {
					out.Lots = append(out.Lots, lotExpiry{Remaining: l.Remaining, ExpiresAt: l.ExpiresAt})
				}
				return out, nil
			})
		// Seen times are pointd's own state: written through on "seen",
		// loaded from the database only on a miss.
		rp.seen = cache.New(o(cacheSeen, 10*time.Minute, time.Hour, 0),
			func(ctx context.Context, id string) (int64, error) {
				at, err := ns.BadgesSeen(ctx, id)
				if err != nil || at.IsZero() {
					return 0, err
				}
				return at.UnixMicro(), nil
			})
		rp.seenQ = &seenWriter{store: ns, log: s.log, every: time.Second}
		if sh := s.cfg.Shared; sh != nil {
			sh.Subscribe(topicNotices, func(string) {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if err := rp.board.Reload(ctx); err != nil {
						s.log.Warn("notices: reload after a publish elsewhere failed", "err", err)
					}
				}()
			})
		}
	}
	s.rp = rp
	if s.writer != nil {
		s.writer.OnCommit(s.invalidateMembers)
	}
}

// topicNotices is the pub/sub topic of "the notices changed".
const topicNotices = "notices"

// invalidateMembers runs in the writer after each commit, before the
// callers are answered.
func (s *Server) invalidateMembers(ctx context.Context, ids []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.rp.balances.Invalidate(ctx, ids...); err != nil {
		s.log.Error("cache: invalidating balances failed; they may be stale until their TTL", "err", err, "members", len(ids))
	}
	if s.rp.activity != nil {
		if err := s.rp.activity.Invalidate(ctx, ids...); err != nil {
			s.log.Error("cache: invalidating member activity failed", "err", err, "members", len(ids))
		}
	}
}

// RunReadPath runs the read path's background work until ctx ends: the
// periodic reload of notices (the backstop for a publish message another
// instance missed), then writes the badge seen times still pending.
func (s *Server) RunReadPath(ctx context.Context, reloadEvery time.Duration) {
	if s.rp.board == nil {
		return
	}
	if reloadEvery <= 0 {
		reloadEvery = 30 * time.Second
	}
	s.rp.board.Run(ctx, reloadEvery)
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.FlushSeen(fctx)
}

// FlushSeen writes the badge seen times still waiting for their batch.
func (s *Server) FlushSeen(ctx context.Context) {
	if s.rp.seenQ != nil {
		s.rp.seenQ.flush(ctx)
	}
}

// seenWriter persists badge seen times in batches: "seen" is answered once
// the time is in the cache (and Redis), and written to the database within
// about a second with everyone else's. A crash loses at most that second:
// those members see their badges once more (docs/design.md).
type seenWriter struct {
	store notice.Store
	log   interface {
		Warn(msg string, args ...any)
	}
	every time.Duration

	mu      sync.Mutex
	pending map[string]time.Time
	running bool
}

func (q *seenWriter) add(memberID string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending == nil {
		q.pending = map[string]time.Time{}
	}
	if at.After(q.pending[memberID]) {
		q.pending[memberID] = at
	}
	if !q.running {
		q.running = true
		go q.loop()
	}
}

// loop writes a batch every interval while there is something to write,
// and ends when there is not (no goroutine idles without work).
func (q *seenWriter) loop() {
	for {
		time.Sleep(q.every)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		n := q.flush(ctx)
		cancel()
		q.mu.Lock()
		if n == 0 && len(q.pending) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
	}
}

// flush writes what is pending and returns how many it took.
func (q *seenWriter) flush(ctx context.Context) int {
	q.mu.Lock()
	batch := make([]notice.Seen, 0, len(q.pending))
	for id, at := range q.pending {
		batch = append(batch, notice.Seen{MemberID: id, At: at})
	}
	q.pending = nil
	q.mu.Unlock()
	if len(batch) == 0 {
		return 0
	}
	if err := q.store.SaveBadgesSeen(ctx, batch); err != nil {
		q.log.Warn("badges: saving seen times failed; retrying with the next batch", "err", err, "members", len(batch))
		q.mu.Lock()
		if q.pending == nil {
			q.pending = map[string]time.Time{}
		}
		for _, s := range batch {
			if s.At.After(q.pending[s.MemberID]) {
				q.pending[s.MemberID] = s.At
			}
		}
		q.mu.Unlock()
	}
	return len(batch)
}

// cachedMember reads a member through the directory cache (the store when
// the read path is off).
func (s *Server) cachedMember(ctx context.Context, id string) (ledger.Member, error) {
	if s.rp == nil {
		return s.store.Member(ctx, id)
	}
	return s.rp.members.Get(ctx, id)
}

// forgetMember, forgetStore and forgetMerchant drop what the read path
// holds of a directory row that was just changed, here and (with Redis) on
// every instance, before the change is answered. A failure is logged: the
// TTL then bounds how long the old row is served.
func (s *Server) forgetMember(r *http.Request, id string) {
	if s.rp == nil {
		return
	}
	if err := s.rp.members.Invalidate(r.Context(), id); err != nil {
		logger(r).Warn("read path: member not invalidated", "member_id", id, "err", err)
	}
}

func (s *Server) forgetStore(r *http.Request, id string) {
	if s.rp == nil {
		return
	}
	if err := s.rp.stores.Invalidate(r.Context(), id); err != nil {
		logger(r).Warn("read path: store not invalidated", "store_id", id, "err", err)
	}
}

// forgetMerchant drops the merchant and its stores, whose cached rows
// carry the merchant (ledger.StoreInfo).
func (s *Server) forgetMerchant(r *http.Request, id string) {
	if s.rp == nil {
		return
	}
	if err := s.rp.merchants.Invalidate(r.Context(), id); err != nil {
		logger(r).Warn("read path: merchant not invalidated", "merchant_id", id, "err", err)
	}
	if s.office == nil {
		return
	}
	stores, err := s.office.ListStores(r.Context(), id, "", 0)
	if err != nil {
		logger(r).Warn("read path: the merchant's stores not invalidated", "merchant_id", id, "err", err)
		return
	}
	ids := make([]string, len(stores))
	for i, st := range stores {
		ids[i] = st.ID
	}
	if len(ids) == 0 {
		return
	}
	if err := s.rp.stores.Invalidate(r.Context(), ids...); err != nil {
		logger(r).Warn("read path: the merchant's stores not invalidated", "merchant_id", id, "err", err)
	}
}
