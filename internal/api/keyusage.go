package api

import (
	"context"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// ownerStatus reads the status of a key's merchant and store, when it has
// them, for the key cache: one or two reads per cache miss, none per request.
func (s *Server) ownerStatus(ctx context.Context, k auth.Key) (merchant, store string, err error) {
	if k.MerchantID != "" {
		m, err := s.store.Merchant(ctx, k.MerchantID)
		switch {
		case err == nil:
			merchant = m.Status
		case ledger.ErrorCode(err) == ledger.CodeMerchantNotFound:
			merchant = ledger.StatusSuspended // a key of no merchant works nowhere
		default:
			return "", "", err
		}
	}
	if k.StoreID != "" {
		si, err := s.store.StoreInfo(ctx, k.StoreID)
		switch {
		case err == nil:
			store = si.Status
		case ledger.ErrorCode(err) == ledger.CodeStoreNotFound:
			store = ledger.StatusSuspended
		default:
			return "", "", err
		}
	}
	return merchant, store, nil
}

// ownerSuspended refuses a key whose merchant or store is suspended: a
// suspended merchant's POS keys stop working for every endpoint, reads
// included.
func ownerSuspended(ck cachedKey) *ledger.Error {
	if ck.merchantStatus == ledger.StatusSuspended {
		return ledger.Errorf(ledger.CodeMerchantSuspended, "this key's merchant %s is suspended", ck.key.MerchantID)
	}
	if ck.storeStatus == ledger.StatusSuspended {
		return ledger.Errorf(ledger.CodeStoreSuspended, "this key's store %s is suspended", ck.key.StoreID)
	}
	return nil
}

// keyUsageFlushEvery is how often, at most, an instance writes the keys'
// last-used times: a key's last_used_at may lag by this much (plus the time
// until the next request that triggers the flush).
const keyUsageFlushEvery = 30 * time.Second

// keyUsage collects when each key was last used and writes the lot in one
// transaction at most every keyUsageFlushEvery, from the request that finds
// the interval passed (in its own goroutine, never on the request's time):
// a request costs a map write under a mutex, never a database write.
type keyUsage struct {
	mu       sync.Mutex
	seen     map[string]time.Time
	last     time.Time // when the last flush started
	flushing bool
	// writing is held while a batch is written, so that FlushKeyUsage
	// returns after the writes under way (order does not matter: TouchKeys
	// never moves a time backwards).
	writing sync.Mutex
	every   time.Duration
}

func newKeyUsage(every time.Duration) *keyUsage {
	return &keyUsage{seen: map[string]time.Time{}, last: time.Now(), every: every}
}

func (u *keyUsage) note(keyID string, store backoffice.Store) {
	if u == nil || store == nil {
		return
	}
	now := time.Now()
	u.mu.Lock()
	u.seen[keyID] = now
	due := !u.flushing && now.Sub(u.last) >= u.every
	var batch map[string]time.Time
	if due {
		batch, u.seen, u.last, u.flushing = u.seen, map[string]time.Time{}, now, true
	}
	u.mu.Unlock()
	if due {
		go func() {
			u.writing.Lock()
			defer u.writing.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = store.TouchKeys(ctx, batch) // best effort: the next flush has newer times anyway
			u.mu.Lock()
			u.flushing = false
			u.mu.Unlock()
		}()
	}
}

// flush writes what was collected now, after any flush under way.
func (u *keyUsage) flush(ctx context.Context, store backoffice.Store) error {
	if u == nil || store == nil {
		return nil
	}
	u.writing.Lock()
	defer u.writing.Unlock()
	u.mu.Lock()
	batch := u.seen
	u.seen, u.last = map[string]time.Time{}, time.Now()
	u.mu.Unlock()
	return store.TouchKeys(ctx, batch)
}

// FlushKeyUsage writes the last-used times collected since the last flush.
// The server calls it on shutdown; tests call it to read them at once.
func (s *Server) FlushKeyUsage(ctx context.Context) error {
	return s.usage.flush(ctx, s.office)
}
