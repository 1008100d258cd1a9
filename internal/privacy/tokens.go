package privacy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// Tokens seals the small values a server hands to clients and takes back,
// such as page cursors: a client can neither read what is inside (a
// position in the ledger says how much happened elsewhere) nor make one up.
// Each token is bound to a purpose (what it is for, and for whom), so that
// one given out for one list is refused by another.
type Tokens struct {
	aead cipher.AEAD
}

// tokenVersion prefixes every token, as version does sealed phones.
const tokenVersion byte = 1

// NewTokens derives the token key from a data key (HKDF-SHA256 with a label
// of its own, independent of the phone keys). Instances that share the
// data key accept each other's tokens.
func NewTokens(dataKey []byte) (*Tokens, error) {
	k, err := hkdf.Key(sha256.New, dataKey, nil, "pointd tokens v1", KeySize)
	if err != nil {
		return nil, err
	}
	return tokensOf(k)
}

// RandomTokens has a key made up for the life of the process: its tokens
// are refused by other processes and after a restart.
func RandomTokens() *Tokens {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	t, err := tokensOf(k)
	if err != nil {
		panic(err)
	}
	return t
}

func tokensOf(key []byte) (*Tokens, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Tokens{aead: aead}, nil
}

// Seal encrypts and authenticates plain for purpose, as URL-safe base64.
func (t *Tokens) Seal(purpose string, plain []byte) string {
	n := t.aead.NonceSize()
	out := make([]byte, 1+n, 1+n+len(plain)+t.aead.Overhead())
	out[0] = tokenVersion
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err)
	}
	out = t.aead.Seal(out, out[1:1+n], plain, t.ad(purpose))
	return base64.RawURLEncoding.EncodeToString(out)
}

// Open returns what Seal sealed for the same purpose; ok is false for
// anything else (altered, made up, sealed by another key or for another
// purpose).
func (t *Tokens) Open(purpose, token string) (plain []byte, ok bool) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	n := t.aead.NonceSize()
	if err != nil || len(b) < 1+n+t.aead.Overhead() || b[0] != tokenVersion {
		return nil, false
	}
	plain, err = t.aead.Open(nil, b[1:1+n], b[1+n:], t.ad(purpose))
	return plain, err == nil
}

func (t *Tokens) ad(purpose string) []byte { return append([]byte{tokenVersion}, purpose...) }
