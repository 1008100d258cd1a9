package privacy

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestTokens(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	a, err := NewTokens(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewTokens(key) // another instance with the same data key
	tok := a.Seal("history:m1", []byte("seq 42"))
	if got, ok := b.Open("history:m1", tok); !ok || string(got) != "seq 42" {
		t.Fatalf("open: %q %v", got, ok)
	}
	if bytes.Contains([]byte(tok), []byte("42")) {
		t.Errorf("token %q shows what it holds", tok)
	}
	if tok == a.Seal("history:m1", []byte("seq 42")) {
		t.Error("the same value sealed twice looks the same")
	}
	if _, ok := a.Open("history:m2", tok); ok {
		t.Error("a token opens for another purpose")
	}
	if _, ok := RandomTokens().Open("history:m1", tok); ok {
		t.Error("a token opens under another key")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	for i := range raw {
		c := bytes.Clone(raw)
		c[i] ^= 1
		if _, ok := a.Open("history:m1", base64.RawURLEncoding.EncodeToString(c)); ok {
			t.Fatalf("a token with byte %d altered opens", i)
		}
	}
	for _, bad := range []string{"", "!!", "czQy", base64.RawURLEncoding.EncodeToString([]byte("s42"))} {
		if _, ok := a.Open("history:m1", bad); ok {
			t.Errorf("%q opens", bad)
		}
	}
}
