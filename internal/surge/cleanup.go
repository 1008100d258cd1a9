package surge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// CleanupResult counts what Cleanup retired.
type CleanupResult struct {
	Keys, Stores, Merchants, Members int
}

var runIDPattern = regexp.MustCompile(`^[0-9]{4}[0-9a-f]{8}$`)

// Cleanup retires the synthetic data of one surge run on a target: its POS
// keys are revoked and its merchants, stores and members suspended, so that
// nothing can trade with them any more. Nothing is deleted: the ledger is
// append-only and hash-chained, so the run's transactions stay, and an
// audit still sums them. Running it again finds nothing left to do.
func Cleanup(ctx context.Context, target, adminKey, runID string, out io.Writer) (CleanupResult, error) {
	var res CleanupResult
	if !runIDPattern.MatchString(runID) {
		return res, fmt.Errorf("--cleanup: %q is not a surge run id (MMDD and 8 hex digits, printed at the start of a run)", runID)
	}
	c := newClient(strings.TrimRight(target, "/"), 10*time.Second, 4, 1)
	defer c.close()
	prefix := "surge-" + runID + " "
	act := func(path string, body []byte) error {
		for n := 0; ; n++ {
			a := c.do(ctx, http.MethodPost, path, adminKey, "", body)
			if a.err == nil && a.status == http.StatusOK {
				return nil
			}
			if !a.retryable() || n == 5 {
				return fmt.Errorf("POST %s: HTTP %d %v %s", path, a.status, a.err, a.body)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(a.retryAfter(n)):
			}
		}
	}
	reason := jsonBody(map[string]string{"reason": "surge run " + runID + " cleaned up"})

	type keyRow struct {
		ID        string     `json:"id"`
		Name      string     `json:"name"`
		RevokedAt *time.Time `json:"revoked_at"`
	}
	err := eachPage(ctx, c, adminKey, "/v1/keys", func(k keyRow) error {
		if !strings.HasPrefix(k.Name, prefix) || k.RevokedAt != nil {
			return nil
		}
		res.Keys++
		return act("/v1/keys/"+k.ID+"/revoke", nil)
	})
	if err != nil {
		return res, err
	}

	type entity struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		Status string `json:"status"`
	}
	err = eachPage(ctx, c, adminKey, "/v1/merchants", func(m entity) error {
		if !strings.HasPrefix(m.Name, prefix) {
			return nil
		}
		err := eachPage(ctx, c, adminKey, "/v1/merchants/"+m.ID+"/stores", func(s entity) error {
			if s.Status == "suspended" {
				return nil
			}
			res.Stores++
			return act("/v1/stores/"+s.ID+"/suspend", reason)
		})
		if err != nil || m.Status == "suspended" {
			return err
		}
		res.Merchants++
		return act("/v1/merchants/"+m.ID+"/suspend", reason)
	})
	if err != nil {
		return res, err
	}

	err = eachPage(ctx, c, adminKey, "/v1/members?name="+url.QueryEscape(prefix+"member "), func(m entity) error {
		if !strings.HasPrefix(m.Name, prefix) || m.Status == "suspended" {
			return nil
		}
		res.Members++
		return act("/v1/members/"+m.ID+"/suspend", reason)
	})
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "surge run %s: revoked %d keys, suspended %d stores, %d merchants and %d members\n",
		runID, res.Keys, res.Stores, res.Merchants, res.Members)
	return res, nil
}

// eachPage calls fn for every item of a cursor-paginated list.
func eachPage[T any](ctx context.Context, c *client, key, path string, fn func(T) error) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	cursor := ""
	for {
		var p struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		q := path + sep + "limit=100"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		if _, err := c.getJSON(ctx, q, key, &p); err != nil {
			return err
		}
		for _, it := range p.Items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if p.NextCursor == "" {
			return nil
		}
		cursor = p.NextCursor
	}
}
