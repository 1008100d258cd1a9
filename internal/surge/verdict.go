package surge

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
)

// Discrepancy is one thing the server holds that surge's record says it
// should not (or the reverse).
type Discrepancy struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// Discrepancy kinds.
const (
	KindUnresolved  = "unresolved"           // no definitive answer after all retries
	KindWrongAnswer = "wrong_answer"         // the 201 itself disagreed with the request
	KindMissing     = "missing"              // acknowledged, but GET /v1/transactions/{id} does not find it
	KindWrongTxn    = "wrong_transaction"    // found, with another type, amount or member
	KindTwice       = "receipt_earned_twice" // a receipt earned on more than once
	KindUnknown     = "unknown_transaction"  // in a synthetic member's history, never acknowledged
	KindBalance     = "balance"              // balance or held points differ from the model
	KindAudit       = "audit"                // pointd verify found the ledger unsound
	KindCheck       = "check_failed"         // surge could not read what it had to check
)

// verdict checks the record against the server.
func (w *workload) verdict(ctx context.Context) []Discrepancy {
	var mu sync.Mutex
	var out []Discrepancy
	add := func(kind, format string, args ...any) {
		mu.Lock()
		out = append(out, Discrepancy{kind, fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	type memModel struct {
		balance, held int64
		unresolved    int
		txns          map[string]*op
	}
	w.mu.Lock()
	ops := append([]*op(nil), w.ops...)
	members := append([]*member(nil), w.members...)
	w.mu.Unlock()
	model := map[*member]*memModel{}
	for _, m := range members {
		model[m] = &memModel{txns: map[string]*op{}}
	}
	var acked []*op
	for _, o := range ops {
		mm := model[o.Member]
		switch o.Outcome {
		case outUnresolved:
			mm.unresolved++
			add(KindUnresolved, "%s %s (key %s) had no definitive answer after %d attempts (last: %s)",
				o.Kind, o.Path, o.Idem, o.Attempts, lastAnswer(o))
		case outAcked:
			mm.balance += o.Delta
			mm.held += o.HeldD
			mm.txns[o.TxnID] = o
			acked = append(acked, o)
			if o.GotType != o.WantType || o.GotPoints != o.WantPts || o.GotMember != o.Member.id {
				add(KindWrongAnswer, "%s (key %s) was answered %s %d points for member %s, want %s %d for %s",
					o.Kind, o.Idem, o.GotType, o.GotPoints, o.GotMember, o.WantType, o.WantPts, o.Member.id)
			}
		}
	}

	work := make(chan func(), 64)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	// Every acknowledged transaction exists, with the right type and amount.
	for _, o := range acked {
		work <- func() {
			var t struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Points   int64  `json:"points"`
				MemberID string `json:"member_id"`
			}
			st, err := w.c.getJSON(ctx, "/v1/transactions/"+url.PathEscape(o.TxnID), w.admin, &t)
			switch {
			case st == http.StatusNotFound:
				add(KindMissing, "%s %s (key %s, %d points) was acknowledged but the server has no such transaction",
					o.Kind, o.TxnID, o.Idem, o.WantPts)
			case err != nil:
				add(KindCheck, "transaction %s: %v", o.TxnID, err)
			case t.Type != o.WantType || t.Points != o.WantPts || t.MemberID != o.Member.id:
				add(KindWrongTxn, "transaction %s is %s %d points for member %s, want %s %d for %s",
					o.TxnID, t.Type, t.Points, t.MemberID, o.WantType, o.WantPts, o.Member.id)
			}
		}
	}
	// Every synthetic member: its history holds each acknowledged operation
	// once and nothing else; its balance is what the model says.
	for _, m := range members {
		mm := model[m]
		work <- func() {
			receipts := map[string]int{}
			seen := map[string]bool{}
			cursor := ""
			for {
				var pg struct {
					Items []struct {
						ID      string `json:"id"`
						Type    string `json:"type"`
						Receipt string `json:"receipt"`
						Points  int64  `json:"points"`
					} `json:"items"`
					NextCursor string `json:"next_cursor"`
				}
				path := "/v1/members/" + m.id + "/transactions?limit=200"
				if cursor != "" {
					path += "&cursor=" + url.QueryEscape(cursor)
				}
				if _, err := w.c.getJSON(ctx, path, w.admin, &pg); err != nil {
					add(KindCheck, "history of member %s: %v", m.id, err)
					return
				}
				for _, x := range pg.Items {
					if x.Type == "earn" && x.Receipt != "" {
						receipts[x.Receipt]++
						if receipts[x.Receipt] == 2 {
							add(KindTwice, "member %s: receipt %s earned on more than once", m.id, x.Receipt)
						}
					}
					if seen[x.ID] {
						add(KindUnknown, "member %s: transaction %s listed twice", m.id, x.ID)
					}
					seen[x.ID] = true
					if mm.txns[x.ID] == nil && mm.unresolved == 0 {
						add(KindUnknown, "member %s: %s transaction %s (%d points, receipt %q) that surge was never acknowledged",
							m.id, x.Type, x.ID, x.Points, x.Receipt)
					}
				}
				if pg.NextCursor == "" {
					break
				}
				cursor = pg.NextCursor
			}
			if mm.unresolved > 0 {
				return // its model is open; the unresolved operations are listed already
			}
			var b struct {
				Balance int64 `json:"balance"`
				Held    int64 `json:"held"`
			}
			if _, err := w.c.getJSON(ctx, "/v1/members/"+m.id+"/balance", w.admin, &b); err != nil {
				add(KindCheck, "balance of member %s: %v", m.id, err)
				return
			}
			if b.Balance != mm.balance || b.Held != mm.held {
				add(KindBalance, "member %s: balance %d held %d, surge's record says %d held %d",
					m.id, b.Balance, b.Held, mm.balance, mm.held)
			}
		}
	}
	close(work)
	wg.Wait()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

func lastAnswer(o *op) string {
	if o.Status == 0 {
		return "no answer"
	}
	if o.Code != "" {
		return fmt.Sprintf("HTTP %d %s", o.Status, o.Code)
	}
	return fmt.Sprintf("HTTP %d", o.Status)
}
