package api

import (
	"testing"
	"time"
)

// A lookup that began before a revocation (or rotation, suspension, logout)
// must not put its older answer back into the cache after the drop.
func TestCredCacheKeepsNoAnswerOlderThanADrop(t *testing.T) {
	c := newCredCache[string](time.Minute)
	gen := c.begin() // a lookup reads the row: still valid
	c.drop(func(string) bool { return true })
	c.put("h", "valid", gen) // its answer arrives after the revocation
	if v, ok := c.get("h"); ok {
		t.Fatalf("the cache kept %q from a lookup older than the drop", v)
	}
	gen = c.begin()
	c.put("h", "valid", gen)
	if v, ok := c.get("h"); !ok || v != "valid" {
		t.Fatalf("a lookup after the drop is not kept: %q, %v", v, ok)
	}
	c.drop(func(v string) bool { return v == "valid" })
	if _, ok := c.get("h"); ok {
		t.Fatal("a dropped entry is still answered")
	}
}
