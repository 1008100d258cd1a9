// Package auth is pointd's callers: API keys with a role, a mode (live or
// test) and an owner, and how a presented key is checked.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"time"
)

// Role says what a key may do.
type Role string

const (
	RoleAdmin  Role = "admin"  // operators: everything
	RoleViewer Role = "viewer" // operators who may look but not change anything
	RolePOS    Role = "pos"    // a merchant's terminals: ledger operations at its stores
	RoleApp    Role = "app"    // a member app's backend: notices, and members' own data
	// RoleMember is a member's own session token, never the role of a stored
	// API key: such a caller has MemberID set and sees only that member.
	RoleMember Role = "member"
)

// Mode separates test integrations from live money: a server runs in one
// mode and refuses keys of the other.
type Mode string

const (
	ModeLive Mode = "live"
	ModeTest Mode = "test"
)

// Key is an API key as stored: never the key itself, only its hash.
type Key struct {
	ID         string
	Prefix     string // shown in lists and logs: "pd_live_AbCd"
	Hash       []byte // SHA-256 of the whole key
	Role       Role
	Mode       Mode
	MerchantID string // set on POS keys
	StoreID    string // optional: confines a POS key to one store
	MemberID   string // set on member sessions (RoleMember) only
	Name       string
	CreatedAt  time.Time
	RevokedAt  time.Time // zero while the key works
	// ExpiresAt, when set, ends the key: a rotated key works until then.
	ExpiresAt time.Time
	// LastUsedAt is when the key last authenticated a request, recorded in
	// batches: it may lag the truth by the server's flush interval.
	LastUsedAt time.Time
	// RateLimitPerSecond is the key's own request rate limit; 0: the
	// server's default (--rate-limit-key).
	RateLimitPerSecond int
	// RateLimitBurst is how many requests the key may send at once; 0: one
	// second's worth.
	RateLimitBurst int
	// Lineage is, on a key made by a rotation, the id of the first key of
	// its chain of rotations (the key that was created, not rotated); ""
	// on that first key itself. A rotation hands the new key the old key's
	// idempotency scope through it.
	Lineage string
}

// IdempotencyScope is what owns the key's idempotency records and the ids
// derived from its requests. A POS key's are its merchant's and store's:
// the terminals of one till share them, and a rotated or replaced key
// finds them. Any other key's are the operator's behind it: the first key
// of its rotation chain, so that a retry under the rotated key replays
// instead of executing again.
func (k Key) IdempotencyScope() string {
	switch {
	case k.Role == RolePOS:
		return "pos:" + k.MerchantID + "/" + k.StoreID
	case k.Lineage != "":
		return k.Lineage
	}
	return k.ID
}

// Root is the first key of k's rotation chain: what a rotation of k
// records as the new key's Lineage.
func (k Key) Root() string {
	if k.Lineage != "" {
		return k.Lineage
	}
	return k.ID
}

// Usable reports whether the key may authenticate a request at now: not
// revoked, and not past its expiry.
func (k Key) Usable(now time.Time) bool {
	return k.RevokedAt.IsZero() && (k.ExpiresAt.IsZero() || now.Before(k.ExpiresAt))
}

// ErrKeyNotFound is returned by KeyStore.KeyByHash for an unknown key.
var ErrKeyNotFound = errors.New("api key not found")

// KeyStore keeps API keys.
type KeyStore interface {
	CreateKey(ctx context.Context, k Key) error
	KeyByHash(ctx context.Context, hash []byte) (Key, error)
}

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewSecret returns a fresh key text for mode and the Key record to store
// (without ID, role and owner, which the caller fills in).
func NewSecret(mode Mode) (string, Key) {
	const n = 32 // × log2(62) ≈ 190 bits
	var sb strings.Builder
	sb.WriteString("pd_" + string(mode) + "_")
	var buf [64]byte
	for written := 0; written < n; {
		if _, err := rand.Read(buf[:]); err != nil {
			panic(err) // crypto/rand does not fail on supported systems
		}
		for _, c := range buf {
			// Bytes of 248 and above are dropped so every character is
			// equally likely (248 = 4 × 62).
			if c < 248 && written < n {
				sb.WriteByte(alphabet[int(c)%len(alphabet)])
				written++
			}
		}
	}
	secret := sb.String()
	return secret, Key{Prefix: secret[:len("pd_")+len(mode)+1+4], Hash: HashSecret(secret), Mode: mode, CreatedAt: time.Now().UTC()}
}

// HashSecret is how a key is looked up: keys are long random strings, so a
// plain SHA-256 is enough (no password stretching needed).
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ParseMode reads the mode a key text claims from its prefix.
func ParseMode(secret string) (Mode, bool) {
	switch {
	case strings.HasPrefix(secret, "pd_live_"):
		return ModeLive, true
	case strings.HasPrefix(secret, "pd_test_"):
		return ModeTest, true
	}
	return "", false
}
