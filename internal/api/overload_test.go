package api

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// TestOverload fills a writer with a queue of one: what does not fit is
// refused at once with 503 overloaded and a Retry-After, nothing refused is
// written, everything acknowledged is, and retries with the same keys all
// end up applied exactly once.
func TestOverload(t *testing.T) {
	t.Run("with the writer held until the queue is full", func(t *testing.T) { overload(t, true, 40) })
	t.Run("with the writer running", func(t *testing.T) { overload(t, false, 100) })
}

func overload(t *testing.T, held bool, n int) {
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	if !held {
		open()
	}
	h := newHarness(t, withWriter(ledger.WriterConfig{QueueSize: 1, MaxBatch: 1}), withGate(gate))
	t.Cleanup(open) // runs before the writer drains
	w := h.newWorld()

	type call struct {
		key  string
		body map[string]any
	}
	calls := make([]call, n)
	for i := range calls {
		calls[i] = call{h.idem(), map[string]any{"member_id": w.member.ID, "store_id": w.storeA, "receipt": h.receipt(), "purchase_amount": 1000}}
	}
	send := func(c call) (reply, error) {
		return h.send(req{method: http.MethodPost, path: "/v1/earns", key: w.posA, idem: c.key, body: c.body})
	}

	// Everything at once while the writer is held: the queue fills, the rest
	// is refused; then the writer goes on.
	type result struct {
		i   int
		r   reply
		err error
	}
	results := make(chan result, n)
	for i, c := range calls {
		go func() {
			r, err := send(c)
			results <- result{i, r, err}
		}()
	}
	first := make([]reply, n)
	for got := 0; got < n; {
		select {
		case res := <-results:
			if res.err != nil {
				t.Fatal(res.err)
			}
			first[res.i] = res.r
			got++
		case <-time.After(300 * time.Millisecond):
			open() // what could be refused has been: let the writer go on
		}
	}
	open()

	var accepted, refused []int
	for i, r := range first {
		switch r.status {
		case http.StatusCreated:
			accepted = append(accepted, i)
		case http.StatusServiceUnavailable:
			refused = append(refused, i)
			p := problem(t, r, http.StatusServiceUnavailable, ledger.CodeOverloaded, "")
			if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 30 {
				t.Errorf("Retry-After %q, want whole seconds from 1 to 30 (%s)", r.header.Get("Retry-After"), p.Detail)
			}
		default:
			t.Fatalf("request %d: %s", i, r)
		}
	}
	t.Logf("%d accepted, %d refused at first", len(accepted), len(refused))
	if held && (len(refused) == 0 || len(accepted) == 0) {
		t.Fatalf("%d accepted and %d refused; want some of each from a queue of one", len(accepted), len(refused))
	}

	t.Run("every acknowledged earn is in the ledger, and no refused one", func(t *testing.T) {
		h := h.at(t)
		inLedger := map[string]bool{}
		for _, tx := range h.history(w.member.ID, maxPageSize) {
			inLedger[tx.Receipt] = true
		}
		for _, i := range accepted {
			tx := want[opResponse](t, first[i], http.StatusCreated)
			if !inLedger[calls[i].body["receipt"].(string)] {
				t.Errorf("acknowledged earn %s is not in the history", tx.ID)
			}
			want[ledger.Transaction](t, h.get("/v1/transactions/"+tx.ID, w.posA), http.StatusOK)
		}
		for _, i := range refused {
			if inLedger[calls[i].body["receipt"].(string)] {
				t.Errorf("refused earn %d was written", i)
			}
		}
		if len(inLedger) != len(accepted) {
			t.Errorf("%d earns in the ledger, %d acknowledged", len(inLedger), len(accepted))
		}
	})

	t.Run("retries with the same keys all succeed, exactly once", func(t *testing.T) {
		h := h.at(t)
		final := map[int]reply{}
		for _, i := range accepted {
			final[i] = first[i]
		}
		pending := refused
		for round := 0; len(pending) > 0; round++ {
			if round == 200 {
				t.Fatalf("%d requests still refused after %d rounds", len(pending), round)
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			var still []int
			for _, i := range pending {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := send(calls[i])
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						t.Error(err)
					case r.status == http.StatusCreated:
						final[i] = r
					case r.status == http.StatusServiceUnavailable:
						still = append(still, i)
					default:
						t.Errorf("retry of %d: %s", i, r)
					}
				}()
			}
			wg.Wait()
			pending = still
			time.Sleep(10 * time.Millisecond) // a client would wait Retry-After
		}
		if got, want := h.balance(w.member.ID).Balance, int64(n)*15; got != want {
			t.Errorf("balance %d, want %d: every earn once", got, want)
		}
		receipts := map[string]int{}
		for _, tx := range h.history(w.member.ID, maxPageSize) {
			receipts[tx.Receipt]++
		}
		for _, c := range calls {
			if k := receipts[c.body["receipt"].(string)]; k != 1 {
				t.Errorf("receipt %s earned %d times", c.body["receipt"], k)
			}
		}
		// Asked once more, every key answers what it answered when it succeeded.
		for i, c := range calls {
			r, err := send(c)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(r.body, final[i].body) {
				t.Errorf("request %d asked again: %s (replayed %q), first success %s", i, r, r.header.Get("Idempotent-Replayed"), final[i])
			}
		}
	})
}
