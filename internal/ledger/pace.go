package ledger

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Pace measures how fast the writer gets through its work: the time per
// operation at the pace its batches complete. Submit refuses what would wait
// longer than its deadline at that pace, and the admission limit of ledger
// writes lets in what that pace finishes within its target (Little's law;
// Writer.PerOp).
//
// Why the pace and not latency: on a machine short of CPU every request is
// slow, so a limit that reads latency as "the writer is full" shrinks — and
// for a batching writer a smaller limit means smaller batches, each paying
// the commit for fewer operations, so throughput falls with it and the limit
// falls further (measured: the ledger_write limit sat at its floor while the
// writer could have done several times more). The pace rises with batch size
// instead, and so does the limit.
type Pace struct {
	now func() time.Time

	mu      sync.Mutex
	lastEnd time.Time
	span    float64 // moving sums of the batches' busy time (ns) and operations
	ops     float64

	perOp atomic.Int64 // nanoseconds; 0 until the first batch
}

// paceWeight is the share of one batch in the moving sums: about the last
// eight batches count, so that one odd batch does not swing the limit.
const paceWeight = 1.0 / 8

// NewPace makes a Pace; now is the clock (nil: time.Now).
func NewPace(now func() time.Time) *Pace {
	if now == nil {
		now = time.Now
	}
	return &Pace{now: now}
}

// Batch records a batch of n operations that took took and has just ended.
// Its busy time is the shorter of took and the time since the previous
// batch ended: when batches overlap (several batch loops, each waiting in
// the database for the one before), the pace is the time between
// completions, not each batch's own duration; when the writer was idle
// before the batch, it is the batch's own duration. A failed batch counts
// as time spent for nothing. A nil Pace does nothing.
func (p *Pace) Batch(n int, took time.Duration, err error) {
	if p == nil || n <= 0 {
		return
	}
	end := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	span := took
	if !p.lastEnd.IsZero() {
		span = min(span, end.Sub(p.lastEnd))
	}
	p.lastEnd = end
	done := float64(n)
	if err != nil {
		done = 0
	}
	if p.ops == 0 && p.span == 0 {
		p.span, p.ops = float64(max(span, 0)), done
	} else {
		p.span += (float64(max(span, 0)) - p.span) * paceWeight
		p.ops += (done - p.ops) * paceWeight
	}
	if p.ops > 0 {
		p.perOp.Store(int64(math.Max(1, p.span/p.ops)))
	}
}

// PerOp is the time per operation at the measured pace; 0 until a batch
// has completed. A nil Pace says 0.
func (p *Pace) PerOp() time.Duration {
	if p == nil {
		return 0
	}
	return time.Duration(p.perOp.Load())
}
