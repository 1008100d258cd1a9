package api

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/pointd/pointd/internal/auth"
)

// lookupKey finds the key with this hash, from the cache when it can. When
// the cache misses, concurrent requests with the same key share one database
// lookup: a surge of one POS fleet's requests after the entry expires must
// not become a surge of identical queries.
func (s *Server) lookupKey(ctx context.Context, hash []byte) (cachedKey, error) {
	h := string(hash)
	if ck, ok := s.keys.get(h); ok {
		return ck, nil
	}
	v, err := sharedLoad(ctx, &s.keyFlight, h, func(lctx context.Context) (any, error) {
		gen := s.keys.begin()
		k, err := s.keyStore.KeyByHash(lctx, hash)
		var ck cachedKey
		switch {
		case err == nil:
			ck = cachedKey{key: k, found: true}
			if ck.merchantStatus, ck.storeStatus, err = s.ownerStatus(lctx, k); err != nil {
				return cachedKey{}, err
			}
		case errors.Is(err, auth.ErrKeyNotFound):
		default:
			return cachedKey{}, err
		}
		s.keys.put(h, ck, gen)
		return ck, nil
	})
	if err != nil {
		return cachedKey{}, err
	}
	return v.(cachedKey), nil
}

// sharedLoadTimeout bounds a load that sharedLoad detached from its callers:
// against a database that accepts connections but does not answer, an
// unbounded one would hold its connection (and every later caller of the
// same key) until TCP gave up, minutes later.
const sharedLoadTimeout = 10 * time.Second

// sharedLoad runs load once for all concurrent callers of key, detached from
// the first caller (the others wait for its result even if that caller
// leaves) but bounded by sharedLoadTimeout. Each caller waits only as long
// as its own context: when that ends first it gets the context's error,
// which writeError answers as the database's outage, not a request held
// past its deadline.
func sharedLoad(ctx context.Context, g *singleflight.Group, key string, load func(context.Context) (any, error)) (any, error) {
	ch := g.DoChan(key, func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedLoadTimeout)
		defer cancel()
		return load(lctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dropKeys forgets the cached keys that match: how a revocation, a rotation
// or a suspension takes effect at once on this instance.
func (s *Server) dropKeys(match func(auth.Key) bool) {
	s.keys.drop(func(c cachedKey) bool { return c.found && match(c.key) })
}
