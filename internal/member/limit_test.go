package member

import (
	"testing"
	"time"
)

func TestWindowLimiter(t *testing.T) {
	l := newWindowLimiter(3, time.Minute)
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for i := range 3 {
		if ok, _ := l.allow("a", t0.Add(time.Duration(i)*time.Second)); !ok {
			t.Fatalf("event %d refused", i)
		}
	}
	ok, wait := l.allow("a", t0.Add(10*time.Second))
	if ok || wait != 50*time.Second {
		t.Errorf("the 4th event: allowed %v, wait %v; want refused, 50s", ok, wait)
	}
	if ok, _ := l.allow("b", t0.Add(10*time.Second)); !ok {
		t.Error("another key is limited too")
	}
	// Refusals do not count: once the first event leaves the window, one more fits.
	if ok, _ := l.allow("a", t0.Add(time.Minute+time.Millisecond)); !ok {
		t.Error("refused after the oldest event left the window")
	}
	if ok, _ := l.allow("a", t0.Add(time.Minute+2*time.Millisecond)); ok {
		t.Error("allowed a 4th event within the window")
	}
}
