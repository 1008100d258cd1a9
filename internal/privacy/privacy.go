// Package privacy keeps members' personal data unreadable at rest: phone
// numbers are sealed with AES-256-GCM and found again through a keyed hash
// (HMAC-SHA256), both with keys derived from one data key that the operator
// configures (--data-key) and that never enters the database.
package privacy

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// KeySize is the length of a data key: 32 bytes (AES-256).
const KeySize = 32

// version prefixes every sealed value so that a later key or algorithm can
// be told apart from this one.
const version byte = 1

// Phones seals, opens and indexes phone numbers with one data key.
type Phones struct {
	aead   cipher.AEAD
	macKey []byte
	// secrets seals members' code secrets: a key of its own, so a sealed
	// phone can never be opened as a secret or the other way round.
	secrets cipher.AEAD
	tokens  *Tokens
}

// New derives the sealing and the lookup keys from a 32-byte data key (HKDF-
// SHA256 with distinct labels, so the lookup hash reveals nothing about the
// sealing key and the other way round).
func New(dataKey []byte) (*Phones, error) {
	if len(dataKey) != KeySize {
		return nil, fmt.Errorf("the data key must be %d bytes, got %d", KeySize, len(dataKey))
	}
	encKey, err := hkdf.Key(sha256.New, dataKey, nil, "pointd phone seal v1", KeySize)
	if err != nil {
		return nil, err
	}
	macKey, err := hkdf.Key(sha256.New, dataKey, nil, "pointd phone index v1", KeySize)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	secretKey, err := hkdf.Key(sha256.New, dataKey, nil, "pointd member code secret v1", KeySize)
	if err != nil {
		return nil, err
	}
	sblock, err := aes.NewCipher(secretKey)
	if err != nil {
		return nil, err
	}
	secrets, err := cipher.NewGCM(sblock)
	if err != nil {
		return nil, err
	}
	tokens, err := NewTokens(dataKey)
	if err != nil {
		return nil, err
	}
	return &Phones{aead: aead, macKey: macKey, secrets: secrets, tokens: tokens}, nil
}

// SealSecret encrypts a member's code secret like Seal does a phone, bound
// to its owner (the member id is authenticated data): a sealed secret
// copied onto another member's row does not open there.
func (p *Phones) SealSecret(secret []byte, owner string) []byte {
	n := p.secrets.NonceSize()
	out := make([]byte, 1+n, 1+n+len(secret)+p.secrets.Overhead())
	out[0] = version
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err)
	}
	return p.secrets.Seal(out, out[1:], secret, append([]byte{version}, owner...))
}

// OpenSecret decrypts what SealSecret made for owner.
func (p *Phones) OpenSecret(sealed []byte, owner string) ([]byte, error) {
	n := p.secrets.NonceSize()
	if len(sealed) < 1+n+p.secrets.Overhead() || sealed[0] != version {
		return nil, ErrOpenSecret
	}
	b, err := p.secrets.Open(nil, sealed[1:1+n], sealed[1+n:], append([]byte{version}, owner...))
	if err != nil {
		return nil, ErrOpenSecret
	}
	return b, nil
}

// ErrOpenSecret says a sealed code secret could not be opened: another
// data key sealed it, it belongs to another member, or it was changed.
var ErrOpenSecret = errors.New("privacy: cannot open a sealed member code secret (wrong data key, another member's, or altered)")

// Tokens seals what the server gives clients to take back (cursors) with
// a key derived from the same data key, so that every instance sharing
// the key accepts them.
func (p *Phones) Tokens() *Tokens { return p.tokens }

// Seal encrypts a phone number: version, a random nonce, then the
// ciphertext with its tag. The same number sealed twice looks different.
func (p *Phones) Seal(phone string) []byte {
	nonce := make([]byte, 1+p.aead.NonceSize(), 1+p.aead.NonceSize()+len(phone)+p.aead.Overhead())
	nonce[0] = version
	if _, err := rand.Read(nonce[1:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	return p.aead.Seal(nonce, nonce[1:], []byte(phone), []byte{version})
}

// ErrOpen says a sealed value could not be opened: another data key sealed
// it, or it was changed.
var ErrOpen = errors.New("privacy: cannot open a sealed phone number (wrong data key, or the value was altered)")

// Open decrypts what Seal made.
func (p *Phones) Open(sealed []byte) (string, error) {
	n := p.aead.NonceSize()
	if len(sealed) < 1+n+p.aead.Overhead() || sealed[0] != version {
		return "", ErrOpen
	}
	b, err := p.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte{version})
	if err != nil {
		return "", ErrOpen
	}
	return string(b), nil
}

// Index is the lookup hash of a phone number: equal numbers hash equal, and
// without the data key nobody can compute it, so the column cannot be
// reversed by hashing every possible number (there are only ~10^10).
func (p *Phones) Index(phone string) []byte {
	m := hmac.New(sha256.New, p.macKey)
	m.Write([]byte(phone))
	return m.Sum(nil)
}

// ParseKey reads a data key given as standard or URL-safe base64.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("the data key must be %d bytes of base64 (e.g. openssl rand -base64 32), got %d bytes", KeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("the data key is not base64 (make one with: openssl rand -base64 32)")
}

// KeyFileName is the file in the SQLite data folder that holds the data key
// generated on first start.
const KeyFileName = "data.key"

// LoadOrCreateKeyFile reads dir/data.key, or creates it (mode 0600, a fresh
// random key) when it does not exist. created says which happened.
func LoadOrCreateKeyFile(dir string) (key []byte, created bool, err error) {
	path := filepath.Join(dir, KeyFileName)
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, false, err
	}
	// Written whole to a file of its own, then linked into place: a second
	// process starting at once must neither write another key nor read a
	// key file that is still empty. Link fails when the name exists.
	f, err := os.CreateTemp(dir, KeyFileName+".new-*")
	if err != nil {
		return nil, false, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	if err := os.Link(tmp, path); errors.Is(err, os.ErrExist) {
		return LoadOrCreateKeyFile(dir)
	} else if err != nil {
		return nil, false, err
	}
	return k, true, nil
}

var (
	processOnce   sync.Once
	processPhones *Phones
)

// ProcessPhones is a key made up for the life of this process: what a store
// uses when it was opened without a data key (tests and tools that never
// read a phone number). pointd serve always configures a real key.
func ProcessPhones() *Phones {
	processOnce.Do(func() {
		k := make([]byte, KeySize)
		if _, err := rand.Read(k); err != nil {
			panic(err)
		}
		processPhones, _ = New(k)
	})
	return processPhones
}

// Mask shows a phone number the way lists and logs may: the country code
// and the last four digits, the rest starred. "+821012345678" reads
// "+82 10-****-5678"; numbers without a "+" keep their first three digits.
func Mask(phone string) string {
	plus := strings.HasPrefix(phone, "+")
	d := strings.TrimPrefix(phone, "+")
	for _, r := range d {
		if r < '0' || r > '9' {
			return "***" // not a normalised number: show nothing of it
		}
	}
	if len(d) < 7 {
		return "***"
	}
	last := d[len(d)-4:]
	if plus && strings.HasPrefix(d, "82") && len(d) >= 11 { // Korea: +82 10-XXXX-XXXX
		return "+82 " + d[2:4] + "-" + strings.Repeat("*", len(d)-8) + "-" + last
	}
	head := 3
	if plus {
		head = 2
	}
	if len(d)-head-4 < 4 {
		// A short number would show most of its digits that way: keep
		// only the last two.
		return strings.Repeat("*", len(d)-2) + d[len(d)-2:]
	}
	out := d[:head] + " " + strings.Repeat("*", len(d)-head-4) + "-" + last
	if plus {
		out = "+" + out
	}
	return out
}
