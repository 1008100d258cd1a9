package cache

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared is the Redis side of pointd's caches: values under
// <prefix>c:<cache>:<key>, a version counter under <prefix>v:<cache>:<key>
// that every invalidation increments, and one pub/sub channel,
// <prefix>events, that carries invalidations and other topics (a notice was
// published) to every instance.
type Shared struct {
	rdb    redis.UniversalClient
	prefix string
	log    *slog.Logger
	self   string // this instance's id in topic events: its own are not echoed back

	// downUntil (unix ns): after Redis failed, it is not asked again until
	// then. A Redis that hangs must not make every ledger batch wait for a
	// timeout (the writer invalidates before it answers): one request pays
	// it, the others fall back at once.
	downUntil atomic.Int64

	mu     sync.RWMutex
	inval  map[string][]func(keys ...string) // by cache name
	topics map[string][]func(payload string)
}

// NewShared uses rdb for the caches; prefix starts every key and the channel
// (tests give each their own so they never collide).
func NewShared(rdb redis.UniversalClient, prefix string, log *slog.Logger) *Shared {
	if log == nil {
		log = slog.Default()
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Shared{rdb: rdb, prefix: prefix, log: log, self: hex.EncodeToString(id[:]),
		inval: map[string][]func(...string){}, topics: map[string][]func(string){}}
}

// Client is the Redis client.
func (s *Shared) Client() redis.UniversalClient { return s.rdb }

// Prefix is the key prefix.
func (s *Shared) Prefix() string { return s.prefix }

func (s *Shared) channel() string { return s.prefix + "events" }

func (s *Shared) dataKey(cache, key string) string { return s.prefix + "c:" + cache + ":" + key }
func (s *Shared) verKey(cache, key string) string  { return s.prefix + "v:" + cache + ":" + key }

// versionTTL outlasts any load in flight: a load that read version n stores
// only while the version is still n, and an expired counter reads as 0.
const versionTTL = time.Hour

// Start subscribes to the event channel and returns once the subscription
// is in place (events published after Start returns are delivered); the
// listener runs until ctx ends. go-redis resubscribes by itself after a lost
// connection; what is published meanwhile is missed, which is why local
// copies have a short LocalTTL and notices are also reloaded periodically.
// An error says the subscription is not in place yet (Redis does not
// answer): the listener runs all the same and subscribes once it can.
func (s *Shared) Start(ctx context.Context) error {
	ps := s.rdb.Subscribe(ctx, s.channel())
	_, err := ps.Receive(ctx)
	ch := ps.Channel()
	go func() {
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				s.dispatch(m.Payload)
			}
		}
	}()
	if err != nil {
		return fmt.Errorf("redis subscribe %s (retried in the background): %w", s.channel(), err)
	}
	return nil
}

// An event is "i\x00<cache>\x00<key>\x00<key>…" (invalidation) or
// "t\x00<topic>\x00<sender>\x00<payload>".
func (s *Shared) dispatch(msg string) {
	parts := strings.Split(msg, "\x00")
	if len(parts) < 2 {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch parts[0] {
	case "i":
		for _, fn := range s.inval[parts[1]] {
			fn(parts[2:]...)
		}
	case "t":
		if len(parts) < 3 || parts[2] == s.self {
			return // this instance acted on its own event when it published it
		}
		payload := ""
		if len(parts) > 3 {
			payload = parts[3]
		}
		for _, fn := range s.topics[parts[1]] {
			fn(payload)
		}
	}
}

func (s *Shared) onInvalidate(cache string, fn func(keys ...string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inval[cache] = append(s.inval[cache], fn)
}

// Subscribe calls fn for every Publish of topic by another instance: the
// publisher has done what the event asks of it already, and doing it again
// when its own event comes back would be a second, useless database read.
func (s *Shared) Subscribe(topic string, fn func(payload string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topics[topic] = append(s.topics[topic], fn)
}

// Publish tells every instance about topic.
func (s *Shared) Publish(ctx context.Context, topic, payload string) error {
	return s.rdb.Publish(ctx, s.channel(), "t\x00"+topic+"\x00"+s.self+"\x00"+payload).Err()
}

// get returns the stored value (nil when none) and the key's version.
func (s *Shared) get(ctx context.Context, cache, key string) ([]byte, string, error) {
	if err := s.skip(); err != nil {
		return nil, "", err
	}
	vals, err := s.rdb.MGet(ctx, s.dataKey(cache, key), s.verKey(cache, key)).Result()
	if err != nil {
		return nil, "", s.check(ctx, err)
	}
	ver := "0"
	if v, ok := vals[1].(string); ok {
		ver = v
	}
	if d, ok := vals[0].(string); ok {
		return []byte(d), ver, nil
	}
	return nil, ver, nil
}

// setIfVersion stores the value only while the version is still ver: an
// invalidation since the load began wins.
var setIfVersion = redis.NewScript(`
local v = redis.call('GET', KEYS[2])
if (v or '0') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0`)

func (s *Shared) setIfVersion(ctx context.Context, cache, key, ver string, raw []byte, ttl time.Duration) error {
	if err := s.skip(); err != nil {
		return err
	}
	return s.check(ctx, setIfVersion.Run(ctx, s.rdb, []string{s.dataKey(cache, key), s.verKey(cache, key)},
		ver, raw, ttl.Milliseconds()).Err())
}

func (s *Shared) set(ctx context.Context, cache, key string, raw []byte, ttl time.Duration) error {
	if err := s.skip(); err != nil {
		return err
	}
	return s.check(ctx, s.rdb.Set(ctx, s.dataKey(cache, key), raw, ttl).Err())
}

// breakFor is how long Redis is left alone after it failed.
const breakFor = 2 * time.Second

// errSkipped: Redis failed less than breakFor ago and was not asked.
var errSkipped = errors.New("redis failed a moment ago; not asked again yet")

func (s *Shared) skip() error {
	if time.Now().UnixNano() < s.downUntil.Load() {
		return errSkipped
	}
	return nil
}

// check notes a failure of Redis itself (not a caller that went away, not
// a missing key) so that the next calls skip it for a moment.
func (s *Shared) check(ctx context.Context, err error) error {
	if err != nil && !errors.Is(err, redis.Nil) && ctx.Err() == nil {
		s.downUntil.Store(time.Now().Add(breakFor).UnixNano())
	}
	return err
}

// invalidate bumps the versions and deletes the values of keys in one
// round trip, then tells the other instances to drop their local copies.
func (s *Shared) invalidate(ctx context.Context, cache string, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	if err := s.skip(); err != nil {
		return fmt.Errorf("redis invalidate %s: %w", cache, err)
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			vk := s.verKey(cache, k)
			p.Incr(ctx, vk)
			p.Expire(ctx, vk, versionTTL)
			p.Del(ctx, s.dataKey(cache, k))
		}
		p.Publish(ctx, s.channel(), "i\x00"+cache+"\x00"+strings.Join(keys, "\x00"))
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis invalidate %s: %w", cache, s.check(ctx, err))
	}
	return nil
}

// Ping checks that Redis answers.
func (s *Shared) Ping(ctx context.Context) error {
	if s == nil {
		return ErrNoShared
	}
	return s.rdb.Ping(ctx).Err()
}
