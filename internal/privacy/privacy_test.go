package privacy

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newPhones(t *testing.T) *Phones {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	p, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSealOpen(t *testing.T) {
	p, other := newPhones(t), newPhones(t)
	const phone = "+821012345678"
	a, b := p.Seal(phone), p.Seal(phone)
	if bytes.Equal(a, b) {
		t.Error("the same number sealed twice looks the same: the nonce is not fresh")
	}
	if bytes.Contains(a, []byte(phone)) || bytes.Contains(a, []byte("12345678")) {
		t.Error("the sealed value shows the number")
	}
	for _, s := range [][]byte{a, b} {
		if got, err := p.Open(s); err != nil || got != phone {
			t.Errorf("Open = %q, %v", got, err)
		}
	}
	if _, err := other.Open(a); err != ErrOpen {
		t.Errorf("another key opened it: %v", err)
	}
	tampered := bytes.Clone(a)
	tampered[len(tampered)-1] ^= 1
	if _, err := p.Open(tampered); err != ErrOpen {
		t.Errorf("a changed value opened: %v", err)
	}
	for _, short := range [][]byte{nil, {1}, a[:10]} {
		if _, err := p.Open(short); err != ErrOpen {
			t.Errorf("Open(%x) = %v", short, err)
		}
	}
}

func TestIndexIsKeyed(t *testing.T) {
	p, other := newPhones(t), newPhones(t)
	if !bytes.Equal(p.Index("+15550001"), p.Index("+15550001")) {
		t.Error("the index of one number differs between calls")
	}
	if bytes.Equal(p.Index("+15550001"), p.Index("+15550002")) {
		t.Error("two numbers share an index")
	}
	if bytes.Equal(p.Index("+15550001"), other.Index("+15550001")) {
		t.Error("the index does not depend on the key")
	}
}

func TestNewRefusesBadKeys(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("a %d-byte key was accepted", n)
		}
	}
}

func TestParseKey(t *testing.T) {
	k := bytes.Repeat([]byte{7}, KeySize)
	for _, s := range []string{base64.StdEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k) + "\n"} {
		got, err := ParseKey(s)
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("ParseKey(%q) = %x, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(k[:16])} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, created, err := LoadOrCreateKeyFile(dir)
	if err != nil || !created || len(k1) != KeySize {
		t.Fatalf("first start: %x, %v, %v", k1, created, err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFileName))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, mode %v; want 0600", err, st.Mode())
	}
	k2, created, err := LoadOrCreateKeyFile(dir)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Errorf("second start: created %v, same key %v, %v", created, bytes.Equal(k1, k2), err)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateKeyFile(dir); err == nil {
		t.Error("a damaged key file was accepted (a fresh key would make every stored number unreadable)")
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{
		"+821012345678":  "+82 10-****-5678",
		"+15550123456":   "+15 *****-3456",
		"01012345678":    "010 ****-5678",
		"+4915100000002": "+49 *******-0002",
		"12345":          "***",
		"1234567":        "*****67",
		"+123456789":     "*******89",
		"+82 10 1234":    "***",
	} {
		got := Mask(in)
		if got != want {
			t.Errorf("Mask(%q) = %q, want %q", in, got, want)
		}
		if len(in) >= 11 && strings.Contains(got, in[len(in)-8:len(in)-4]) {
			t.Errorf("Mask(%q) = %q shows the middle digits", in, got)
		}
	}
}

func TestSecrets(t *testing.T) {
	k := make([]byte, KeySize)
	p, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdefghij")
	sealed := p.SealSecret(secret, "m1")
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed secret shows the secret")
	}
	if got, err := p.OpenSecret(sealed, "m1"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open = %q, %v", got, err)
	}
	if _, err := p.OpenSecret(sealed, "m2"); err == nil {
		t.Error("another member's sealed secret opened")
	}
	if _, err := p.Open(sealed); err == nil {
		t.Error("a sealed secret opened as a phone number")
	}
	if _, err := p.OpenSecret(p.Seal("+821012345678"), "m1"); err == nil {
		t.Error("a sealed phone opened as a secret")
	}
	k[0] = 1
	other, _ := New(k)
	if _, err := other.OpenSecret(sealed, "m1"); err == nil {
		t.Error("another data key opened the secret")
	}
}
