package notice

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Board holds the current notices of the whole platform in memory. Reads
// (lists, one notice, badge counts) never query the database; Reload does,
// once for however many callers ask at the same moment.
type Board struct {
	store Store
	now   func() time.Time
	log   *slog.Logger

	snap   atomic.Pointer[snapshot]
	view   atomic.Pointer[View]
	viewMu sync.Mutex
	flight singleflight.Group
	loads  atomic.Int64
}

type snapshot struct {
	notices []Notice // sorted for lists
	gen     uint64
}

// NewBoard makes an empty board; call Reload before serving.
func NewBoard(store Store, now func() time.Time, log *slog.Logger) *Board {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	b := &Board{store: store, now: now, log: log}
	b.snap.Store(&snapshot{})
	return b
}

// Loads is how many times the board has queried the database.
func (b *Board) Loads() int64 { return b.loads.Load() }

// Reload reads the current notices from the database. Concurrent calls
// share one query.
func (b *Board) Reload(ctx context.Context) error {
	_, err, _ := b.flight.Do("reload", func() (any, error) {
		b.loads.Add(1)
		ns, err := b.store.CurrentNotices(ctx, b.now(), MaxCurrent)
		if err != nil {
			return nil, fmt.Errorf("load notices: %w", err)
		}
		slices.SortFunc(ns, compare)
		old := b.snap.Load()
		b.snap.Store(&snapshot{notices: ns, gen: old.gen + 1})
		return nil, nil
	})
	return err
}

// Run reloads every interval until ctx ends: the backstop for a publish
// whose message another instance missed.
func (b *Board) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := b.Reload(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("notices: reload failed; serving the last ones loaded", "err", err)
			}
		}
	}
}

// compare orders notices as lists show them: pinned first, then newest
// publish time first, then by id (newest first: ids are time-ordered).
func compare(a, b Notice) int {
	switch {
	case a.Pinned != b.Pinned:
		if a.Pinned {
			return -1
		}
		return 1
	case !a.PublishAt.Equal(b.PublishAt):
		return b.PublishAt.Compare(a.PublishAt)
	case a.ID != b.ID:
		if a.ID > b.ID {
			return -1
		}
		return 1
	}
	return 0
}

// View is the notices live at one moment, valid until the next scheduled
// publish or end. It is shared by every request until then.
type View struct {
	Live []Notice
	// Gen changes whenever the board reloads.
	Gen uint64
	// At is the moment the view was computed for; Until is when it must be
	// recomputed (a notice starts or ends then).
	At, Until time.Time
	byID      map[string]int
	// Memo is for the HTTP layer: rendered answers, valid as long as the
	// view is.
	Memo sync.Map
}

// View returns the live notices at now.
func (b *Board) View() *View {
	now := b.now()
	s := b.snap.Load()
	if v := b.view.Load(); v != nil && v.Gen == s.gen && !now.Before(v.At) && now.Before(v.Until) {
		return v
	}
	b.viewMu.Lock()
	defer b.viewMu.Unlock()
	if v := b.view.Load(); v != nil && v.Gen == s.gen && !now.Before(v.At) && now.Before(v.Until) {
		return v
	}
	v := &View{Gen: s.gen, At: now, Until: now.Add(24 * time.Hour), byID: map[string]int{}}
	for _, n := range s.notices {
		if n.Live(now) {
			v.byID[n.ID] = len(v.Live)
			v.Live = append(v.Live, n)
		}
		if n.PublishAt.After(now) && n.PublishAt.Before(v.Until) {
			v.Until = n.PublishAt
		}
		if !n.EndsAt.IsZero() && n.EndsAt.After(now) && n.EndsAt.Before(v.Until) {
			v.Until = n.EndsAt
		}
	}
	b.view.Store(v)
	return v
}

// Get returns a live notice.
func (v *View) Get(id string) (Notice, bool) {
	i, ok := v.byID[id]
	if !ok {
		return Notice{}, false
	}
	return v.Live[i], true
}

// Cursor is a position in a list: the last notice of the previous page.
type Cursor struct {
	Pinned    bool
	PublishAt time.Time
	ID        string
}

// List returns up to limit live notices after cursor (nil: from the top),
// of the audience merchantID names ("" for notices to all members), and
// whether more follow.
func (v *View) List(merchantID string, after *Cursor, limit int) ([]Notice, bool) {
	var out []Notice
	for _, n := range v.Live {
		if after != nil && compare(n, Notice{Pinned: after.Pinned, PublishAt: after.PublishAt, ID: after.ID}) <= 0 {
			continue
		}
		if (merchantID == "" && n.Audience != AudienceAll) || (merchantID != "" && n.MerchantID != merchantID) {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		out = append(out, n)
	}
	return out, false
}

// Badge counts what is new for a member in the notices.
type Badge struct {
	// New counts notices whose badge appeared for the member after since
	// and by now.
	New int
	// Latest is when the newest of them appeared (zero when none).
	Latest time.Time
	// Next is when the next notice's badge appears for this member (a
	// ramped one still on its way), zero when none is due before the view
	// changes.
	Next time.Time
}

// NewFor counts the live notices for a member of merchants that became
// visible to them after since (see VisibleAt) and by now.
func (v *View) NewFor(memberID string, merchants map[string]bool, since, now time.Time) Badge {
	var b Badge
	for _, n := range v.Live {
		if !n.For(merchants) {
			continue
		}
		at := n.VisibleAt(memberID)
		switch {
		case at.After(now):
			if b.Next.IsZero() || at.Before(b.Next) {
				b.Next = at
			}
		case at.After(since):
			b.New++
			if at.After(b.Latest) {
				b.Latest = at
			}
		}
	}
	return b
}

// Ensure loads the notices if the board never has.
func (b *Board) Ensure(ctx context.Context) error {
	if b.snap.Load().gen > 0 {
		return nil
	}
	return b.Reload(ctx)
}
