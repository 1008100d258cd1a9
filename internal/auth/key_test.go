package auth

import (
	"bytes"
	"strings"
	"testing"
)

func TestNewSecret(t *testing.T) {
	for _, mode := range []Mode{ModeLive, ModeTest} {
		t.Run("a "+string(mode)+" key says its mode and hashes to what is stored", func(t *testing.T) {
			secret, k := NewSecret(mode)
			if !strings.HasPrefix(secret, "pd_"+string(mode)+"_") {
				t.Fatalf("key %q lacks its mode prefix", secret)
			}
			if got, ok := ParseMode(secret); !ok || got != mode {
				t.Fatalf("ParseMode(%q) = %q, %v", secret, got, ok)
			}
			if !bytes.Equal(k.Hash, HashSecret(secret)) || k.Mode != mode {
				t.Fatalf("stored record does not match the key")
			}
			if !strings.HasPrefix(secret, k.Prefix) || len(k.Prefix) >= len(secret)/2 {
				t.Fatalf("prefix %q should be a short head of the key", k.Prefix)
			}
		})
	}
	t.Run("two keys are never the same", func(t *testing.T) {
		seen := map[string]bool{}
		for range 1000 {
			s, _ := NewSecret(ModeLive)
			if seen[s] {
				t.Fatal("duplicate key")
			}
			seen[s] = true
		}
	})
	t.Run("anything else is not a pointd key", func(t *testing.T) {
		for _, s := range []string{"", "pd_", "pd_prod_x", "sk_live_x", "PD_LIVE_x"} {
			if _, ok := ParseMode(s); ok {
				t.Fatalf("%q taken as a key", s)
			}
		}
	})
}
