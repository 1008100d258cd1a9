package api

import (
	"context"
	"errors"

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
	v, err, _ := s.keyFlight.Do(h, func() (any, error) {
		gen := s.keys.begin()
		// Detached from the first caller: the others wait for this result
		// even if that caller leaves.
		k, err := s.keyStore.KeyByHash(context.WithoutCancel(ctx), hash)
		var ck cachedKey
		switch {
		case err == nil:
			ck = cachedKey{key: k, found: true}
			if ck.merchantStatus, ck.storeStatus, err = s.ownerStatus(context.WithoutCancel(ctx), k); err != nil {
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

// dropKeys forgets the cached keys that match: how a revocation, a rotation
// or a suspension takes effect at once on this instance.
func (s *Server) dropKeys(match func(auth.Key) bool) {
	s.keys.drop(func(c cachedKey) bool { return c.found && match(c.key) })
}
