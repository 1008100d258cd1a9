package ledger

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// WriterConfig sizes the write path.
type WriterConfig struct {
	QueueSize int           // operations waiting at most; a full queue refuses at once
	MaxBatch  int           // operations per database transaction at most
	Linger    time.Duration // how long a batch waits to fill up; 0: take what is there
	Now       func() time.Time
	Logger    *slog.Logger
	// Observer, when set, is told about every operation and every batch
	// (metrics). Its methods must be quick: the writer waits for them.
	Observer Observer
	// DropEvery, when above zero, makes the writer drop the ledger changes of
	// every DropEvery-th acknowledged operation. It exists only so that tests
	// can prove the audit and the surge verdict catch a lost write. Never set
	// it anywhere else.
	DropEvery int
}

// Observer watches the write path.
type Observer interface {
	// Batch is called once per database transaction the writer ran.
	Batch(size int, took time.Duration, err error)
	// Operation is called once per answered operation: how long it waited
	// in the queue, and its outcome: "committed", "replayed", "noop" or the
	// error code it was refused with.
	Operation(kind OpKind, queued time.Duration, outcome string)
}

// DefaultWriterConfig is what a server uses unless told otherwise.
func DefaultWriterConfig() WriterConfig {
	return WriterConfig{QueueSize: 4096, MaxBatch: 256, Now: time.Now}
}

// ErrClosed is returned for operations submitted after Close.
var ErrClosed = &Error{Code: CodeUnavailable, Message: "the server is shutting down; retry with the same Idempotency-Key", RetryAfter: 1}

// Writer is the single entry of every ledger change: a bounded queue and one
// goroutine that applies many operations per database transaction. Holding
// one database connection for writes whatever the load is what keeps the
// pool from filling up in a surge.
type Writer struct {
	store Store
	cfg   WriterConfig
	q     chan *request

	mu     sync.RWMutex // guards closed against sends on a closed q
	closed bool
	done   chan struct{}

	pace    *Pace        // the time per operation at which batches complete
	dropped atomic.Int64 // transactions seen by the planted bug of DropEvery

	// onCommit is told which members a batch changed, after the commit and
	// before any caller is answered (the read path's cache invalidation).
	onCommit atomic.Pointer[func(ctx context.Context, memberIDs []string)]

	// turn is held by the one batch loop that may take operations from the
	// queue; it passes on once that loop's batch is computed and about to
	// commit. See ConcurrentStore.
	turn chan struct{}

	// inCommit, while a batch loop that handed the turn on waits for its
	// commit, is closed when that commit is done (see fill).
	inCommit atomic.Pointer[chan struct{}]

	// lastCommit is when a batch last committed (UnixNano), and dbDown
	// whether the last batch that ended failed because the database was out
	// of reach: together they tell a caller that ran out of time whether
	// it waited for the database (database_unavailable) or in a queue that
	// was moving (unavailable).
	lastCommit atomic.Int64
	dbDown     atomic.Bool
}

// overlapWait bounds how long a batch loop keeps filling its batch while
// another loop's batch commits (see fill).
const overlapWait = 2 * time.Millisecond

// ConcurrentStore is a Store whose Write may run in several goroutines at
// once because it serialises the transactions itself: PostgreSQL's first
// load locks the chain head, so a second transaction waits in the database
// for the first one's COMMIT and then goes on at once. The writer then runs
// that many batch loops (each with its own connection), and the next batch
// is taken from the queue when the current one sends its writes and COMMIT:
// the next BEGIN and loads are then on their way while the current batch
// commits, and wait in the database for its lock instead of being sent one
// round trip after the commit. (Taken earlier, say once the current batch
// holds the lock, the next batch would be small: only what arrived during
// one round trip.) Nothing is answered before its own batch's commit. A
// store without it (SQLite, one writer connection) gets one loop.
type ConcurrentStore interface {
	WriteConcurrency() int
}

type request struct {
	ctx      context.Context
	op       Op
	out      chan outcome
	enqueued time.Time
	taken    time.Time
}

// answer delivers o to the caller and tells the observer.
func (w *Writer) answer(r *request, o outcome) {
	if obs := w.cfg.Observer; obs != nil {
		outcome := "committed"
		switch {
		case o.err != nil:
			outcome = ErrorCode(o.err)
		case o.res.Replayed:
			outcome = "replayed"
		case o.res.Transaction == nil:
			outcome = "noop"
		}
		obs.Operation(r.op.Kind, r.taken.Sub(r.enqueued), outcome)
	}
	r.out <- o
}

// refuse tells the observer about an operation refused before it queued.
func (w *Writer) refuse(op Op, err error) error {
	if obs := w.cfg.Observer; obs != nil {
		obs.Operation(op.Kind, 0, ErrorCode(err))
	}
	return err
}

// NewWriter starts the writer goroutine.
func NewWriter(store Store, cfg WriterConfig) *Writer {
	d := DefaultWriterConfig()
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = d.QueueSize
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = d.MaxBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Writer{store: store, cfg: cfg, q: make(chan *request, cfg.QueueSize), done: make(chan struct{}),
		turn: make(chan struct{}, 1), pace: NewPace(nil)}
	loops := 1
	if c, ok := store.(ConcurrentStore); ok {
		loops = max(1, c.WriteConcurrency())
	}
	w.turn <- struct{}{}
	var wg sync.WaitGroup
	for range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop()
		}()
	}
	go func() {
		wg.Wait()
		close(w.done)
	}()
	return w
}

// QueueDepth is how many operations wait.
func (w *Writer) QueueDepth() int { return len(w.q) }

// PerOp is the time per operation at the pace batches complete (Pace); 0
// until the first batch. The admission limit of ledger writes follows it.
func (w *Writer) PerOp() time.Duration { return w.pace.PerOp() }

// Submit validates op, queues it and waits until it is committed or refused.
// It refuses at once, with CodeOverloaded and a Retry-After, when the queue
// is full or the expected wait would outlast ctx's deadline: a caller that
// will give up anyway should not hold a place in the queue.
func (w *Writer) Submit(ctx context.Context, op Op) (Result, error) {
	if err := op.Validate(); err != nil {
		return Result{}, w.refuse(op, err)
	}
	if op.IdempotencyKey != "" {
		op.fp = op.Fingerprint() // here, not on the writer's goroutine, which every operation waits for
	}
	if dl, ok := ctx.Deadline(); ok {
		wait := time.Duration(len(w.q)+1) * w.pace.PerOp()
		if time.Until(dl) < wait {
			return Result{}, w.refuse(op, w.busy(wait))
		}
	}
	r := &request{ctx: ctx, op: op, out: make(chan outcome, 1), enqueued: time.Now()}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return Result{}, w.refuse(op, ErrClosed)
	}
	select {
	case w.q <- r:
		w.mu.RUnlock()
	default:
		w.mu.RUnlock()
		return Result{}, w.refuse(op, w.busy(time.Duration(len(w.q))*w.pace.PerOp()))
	}
	select {
	case o := <-r.out:
		return o.res, o.err
	case <-ctx.Done():
		// The operation may still commit: the caller learns which by
		// retrying with the same idempotency key. No batch committed since
		// it queued: it waited for a database that did not answer, not in
		// a queue that moved.
		if w.dbDown.Load() || w.lastCommit.Load() < r.enqueued.UnixNano() {
			return Result{}, &Error{Code: CodeDatabaseUnavailable, RetryAfter: DatabaseRetryAfter, Err: ctx.Err(),
				Message: "the request ran out of time waiting for the database; its outcome is not known yet: retry after Retry-After with the same Idempotency-Key to learn it"}
		}
		return Result{}, &Error{Code: CodeUnavailable, RetryAfter: 1,
			Message: "the request ran out of time before its outcome was known; retry with the same Idempotency-Key to learn it"}
	}
}

// busy is the refusal of an operation that would wait too long: the
// database's outage while the last batch found it out of reach (the wait
// is the outage's, not the load's), else overloaded.
func (w *Writer) busy(wait time.Duration) error {
	if w.dbDown.Load() {
		return DatabaseUnavailable(nil, false)
	}
	return w.overloaded(wait)
}

// DatabaseDown reports whether the last batch that ended failed because the
// database was out of reach (until a batch commits again).
func (w *Writer) DatabaseDown() bool { return w.dbDown.Load() }

func (w *Writer) overloaded(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	secs = max(1, min(secs, 30))
	return &Error{Code: CodeOverloaded, RetryAfter: secs,
		Message: "the ledger is busy; retry after the Retry-After delay with the same Idempotency-Key"}
}

// Close stops taking operations, applies every operation already queued and
// returns when the last batch has committed and been answered.
func (w *Writer) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.q)
	}
	w.mu.Unlock()
	<-w.done
}

func (w *Writer) loop() {
	batch := make([]*request, 0, w.cfg.MaxBatch)
	for {
		<-w.turn
		first, ok := <-w.q
		if !ok {
			w.turn <- struct{}{} // the other loops learn it too
			return
		}
		batch = append(batch[:0], first)
		batch = w.fill(batch)
		var once sync.Once
		var done chan struct{}
		pass := func() { once.Do(func() { w.turn <- struct{}{} }) }
		w.run(batch, func() {
			once.Do(func() {
				done = make(chan struct{})
				w.inCommit.Store(&done)
				w.turn <- struct{}{}
			})
		})
		if done != nil {
			w.inCommit.CompareAndSwap(&done, nil)
			close(done)
		}
		pass()
	}
}

// fill takes what is already queued, and with a linger waits that long for
// more. Without one it still waits, at most overlapWait, while another batch
// loop's batch commits: this batch's first statement would only wait in the
// database for that commit's lock, and what arrives meanwhile rides along
// instead of making the next batch (PostgreSQL, 64 clients: 23 → 30 earns a
// batch, about +7 % earns/s; bench/README.md). With one loop (SQLite) or
// nothing committing, nothing waits, so a lone caller never waits for it.
func (w *Writer) fill(batch []*request) []*request {
	var timer <-chan time.Time
	var settled <-chan struct{}
	if w.cfg.Linger > 0 {
		timer = time.After(w.cfg.Linger)
	}
	for len(batch) < w.cfg.MaxBatch {
		select {
		case r, ok := <-w.q:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		if timer == nil {
			c := w.inCommit.Load()
			if c == nil {
				return batch
			}
			timer, settled = time.After(overlapWait), *c
		}
		select {
		case r, ok := <-w.q:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timer:
			return batch
		case <-settled:
			return batch
		}
	}
	return batch
}

// run applies a batch. Callers that already gave up are dropped before any
// work is done for them. If the batch fails as a whole, it is tried once more
// (most failures are transient), then split in halves until the operation at
// fault (say, a receipt another instance took a moment ago) fails alone.
//
// handOff is called when the batch is about to commit (or has failed): the
// next batch may then be taken.
func (w *Writer) run(batch []*request, handOff func()) {
	live := batch[:0]
	now := time.Now()
	for _, r := range batch {
		r.taken = now
		if r.ctx.Err() != nil {
			w.answer(r, outcome{err: &Error{Code: CodeUnavailable, RetryAfter: 1, Message: "the request was abandoned before it was applied; nothing was written"}})
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	start := time.Now()
	err := w.apply(live, handOff)
	if !IsDatabaseUnavailable(err) {
		// An outage says nothing of the pace batches go at: counted, it
		// would have every caller refused as overloaded once the database
		// is back.
		w.pace.Batch(len(live), time.Since(start), err)
	}
	if err == nil {
		return
	}
	w.cfg.Logger.Warn("ledger batch failed; retrying", "size", len(live), "err", err)
	time.Sleep(50 * time.Millisecond)
	w.bisect(live)
}

func (w *Writer) bisect(reqs []*request) {
	err := w.apply(reqs, func() {})
	if err == nil {
		return
	}
	if IsDatabaseUnavailable(err) {
		// Splitting cannot help while the database is out of reach: it
		// would only multiply the attempts. Every operation gets the
		// outage answer; its retry, with the same idempotency key, learns
		// whether a commit whose answer was lost went through.
		w.cfg.Logger.Warn("ledger batch refused: the database is unavailable", "size", len(reqs), "err", err)
		for _, r := range reqs {
			w.answer(r, outcome{err: err})
		}
		return
	}
	if len(reqs) == 1 {
		r := reqs[0]
		w.cfg.Logger.Error("ledger operation failed", "kind", r.op.Kind, "err", err)
		w.answer(r, outcome{err: &Error{Code: CodeUnavailable, RetryAfter: 1,
			Message: "the ledger could not commit this operation; retry with the same Idempotency-Key"}})
		return
	}
	mid := len(reqs) / 2
	w.bisect(reqs[:mid])
	w.bisect(reqs[mid:])
}

// apply runs one database transaction for reqs and answers each of them only
// after the commit: an acknowledgement always means committed.
func (w *Writer) apply(reqs []*request, handOff func()) error {
	ops := make([]Op, len(reqs))
	for i, r := range reqs {
		ops[i] = r.op
	}
	var out []outcome
	start := time.Now()
	// Once taken from the queue, a batch is finished even if its callers
	// leave or the server is stopping: a half-known outcome helps nobody.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := w.store.Write(ctx, func(tx BatchTx) error {
		var err error
		out, err = runBatch(ctx, w.wrap(tx), w.cfg.Now(), ops, handOff)
		return err
	})
	took := time.Since(start)
	if w.cfg.Observer != nil {
		w.cfg.Observer.Batch(len(reqs), took, err)
	}
	if err != nil {
		if IsDatabaseUnavailable(err) {
			w.dbDown.Store(true)
		}
		return err
	}
	w.lastCommit.Store(time.Now().UnixNano())
	w.dbDown.Store(false)
	w.committed(ctx, out)
	for i, r := range reqs {
		w.answer(r, out[i])
	}
	return nil
}

// OnCommit sets the function told, after each batch commits and before its
// callers are answered, which members the batch changed (their balances,
// lots or holds). A cache that forgets those members there lets every
// member read their own acknowledged writes. It must be quick: the writer
// waits for it. A later call replaces the function.
func (w *Writer) OnCommit(fn func(ctx context.Context, memberIDs []string)) {
	w.onCommit.Store(&fn)
}

func (w *Writer) committed(ctx context.Context, out []outcome) {
	fn := w.onCommit.Load()
	if fn == nil {
		return
	}
	var ids []string
	seen := map[string]bool{}
	for _, o := range out {
		if o.err != nil || o.res.Replayed || o.res.Transaction == nil {
			continue
		}
		if id := o.res.Transaction.MemberID; id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
		// A merge changed the member it merged as well (RefID).
		if t := o.res.Transaction; t.Type == TxMerge && t.RefID != "" && !seen[t.RefID] {
			seen[t.RefID] = true
			ids = append(ids, t.RefID)
		}
	}
	if len(ids) > 0 {
		(*fn)(ctx, ids)
	}
}

func (w *Writer) wrap(tx BatchTx) BatchTx {
	if w.cfg.DropEvery <= 0 {
		return tx
	}
	return &dropTx{BatchTx: tx, w: w}
}

// dropTx is the planted bug of WriterConfig.DropEvery.
type dropTx struct {
	BatchTx
	w *Writer
}

// Apply loses every DropEvery-th transaction with the rows that point at it,
// but keeps its balance changes: exactly the kind of silent loss the audit
// and the surge verdict exist to catch.
func (d *dropTx) Apply(ctx context.Context, ws *WriteSet) error {
	dropped := map[string]bool{}
	keep := ws.Transactions[:0]
	for _, t := range ws.Transactions {
		if d.w.dropped.Add(1)%int64(d.w.cfg.DropEvery) == 0 {
			dropped[t.ID] = true
			continue
		}
		keep = append(keep, t)
	}
	ws.Transactions = keep
	if len(dropped) == 0 {
		return d.BatchTx.Apply(ctx, ws)
	}
	ws.Idempotency = filter(ws.Idempotency, func(r IdemRecord) bool { return !dropped[r.TxnID] })
	ws.NewLots = filter(ws.NewLots, func(l Lot) bool { return !dropped[l.ID] })
	ws.NewHolds = filter(ws.NewHolds, func(h Hold) bool { return !dropped[h.ID] })
	return d.BatchTx.Apply(ctx, ws)
}

func filter[T any](in []T, keep func(T) bool) []T {
	out := in[:0]
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// IsOverloaded reports whether err is a refusal for load.
func IsOverloaded(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == CodeOverloaded
}
