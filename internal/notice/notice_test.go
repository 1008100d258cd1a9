package notice

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// The ramp spreads members evenly over it, each always at the same moment,
// and in a different order for every notice.
func TestRampSpreadsMembersEvenlyAndDeterministically(t *testing.T) {
	const members, ramp, buckets = 10_000, 1200, 10
	n := Notice{ID: "n-1", Audience: AudienceAll, PublishAt: t0, RampSeconds: ramp}
	count := make([]int, buckets)
	first := map[string]bool{}
	for i := range members {
		m := fmt.Sprintf("member-%d", i)
		at := n.VisibleAt(m)
		if at.Before(t0) || !at.Before(t0.Add(ramp*time.Second)) {
			t.Fatalf("%s visible at %v, outside the ramp", m, at)
		}
		if again := n.VisibleAt(m); !again.Equal(at) {
			t.Fatalf("%s: %v then %v", m, at, again)
		}
		b := int(at.Sub(t0) * buckets / (ramp * time.Second))
		count[b]++
		if b == 0 {
			first[m] = true
		}
	}
	for b, c := range count {
		if c < members/buckets*8/10 || c > members/buckets*12/10 {
			t.Errorf("tenth %d of the ramp has %d members, want about %d: %v", b, c, members/buckets, count)
		}
	}
	// Another notice: a different first tenth (not the same members rushing first every time).
	n2 := n
	n2.ID = "n-2"
	overlap := 0
	for m := range first {
		if n2.VisibleAt(m).Before(t0.Add(ramp * time.Second / buckets)) {
			overlap++
		}
	}
	if overlap > len(first)/5 {
		t.Errorf("%d of the %d first members of one notice are also first for another", overlap, len(first))
	}
}

// Over the ramp, the number of members who see the badge only grows, and
// each member's badge appears exactly at their moment.
func TestRampOrderingInBadges(t *testing.T) {
	n := Notice{ID: "n-1", Audience: AudienceAll, PublishAt: t0, RampSeconds: 600}
	v := &View{Live: []Notice{n}}
	prev := 0
	for s := 0; s <= 600; s += 30 {
		now := t0.Add(time.Duration(s) * time.Second)
		seeing := 0
		for i := range 1000 {
			m := fmt.Sprintf("m%d", i)
			b := v.NewFor(m, nil, time.Time{}, now)
			if (b.New == 1) != !n.VisibleAt(m).After(now) {
				t.Fatalf("%s at +%ds: %+v, visible at %v", m, s, b, n.VisibleAt(m))
			}
			if b.New == 0 && !b.Next.Equal(n.VisibleAt(m)) {
				t.Fatalf("%s: next %v, visible at %v", m, b.Next, n.VisibleAt(m))
			}
			seeing += b.New
		}
		if seeing < prev {
			t.Fatalf("at +%ds %d members see it, before %d", s, seeing, prev)
		}
		prev = seeing
	}
	if prev != 1000 {
		t.Fatalf("at the end of the ramp %d of 1000 see it", prev)
	}
	// No ramp: everyone at once.
	n.RampSeconds = 0
	if !n.VisibleAt("anyone").Equal(t0) {
		t.Fatal("no ramp, yet not visible at publish_at")
	}
}

func TestValidate(t *testing.T) {
	ok := Notice{Title: "t", Body: "line one\nline two", Audience: AudienceAll, PublishAt: t0}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*Notice){
		"title":        func(n *Notice) { n.Title = strings.Repeat("é", 101) },
		"body":         func(n *Notice) { n.Body = "\x00" },
		"image_url":    func(n *Notice) { n.ImageURL = "https://exa mple.com" },
		"audience":     func(n *Notice) { n.Audience = "" },
		"merchant_id":  func(n *Notice) { n.Audience = AudienceMerchant },
		"ramp_seconds": func(n *Notice) { n.RampSeconds = MaxRampSeconds + 1 },
		"ends_at":      func(n *Notice) { n.EndsAt = t0.Add(-time.Second) },
	}
	for field, break_ := range cases {
		n := ok
		break_(&n)
		err := n.Validate()
		var le *ledger.Error
		if e, isLE := err.(*ledger.Error); isLE {
			le = e
		}
		if le == nil || le.Field != field {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func TestListOrderAndCursor(t *testing.T) {
	mk := func(id string, pinned bool, d time.Duration, merchant string) Notice {
		n := Notice{ID: id, Pinned: pinned, PublishAt: t0.Add(d), Audience: AudienceAll}
		if merchant != "" {
			n.Audience, n.MerchantID = AudienceMerchant, merchant
		}
		return n
	}
	ns := []Notice{mk("a", false, 0, ""), mk("b", false, time.Minute, ""), mk("c", true, 0, ""),
		mk("d", false, time.Minute, ""), mk("e", false, 2*time.Minute, "m1")}
	b := NewBoard(nil, func() time.Time { return t0.Add(time.Hour) }, nil)
	b.snap.Store(&snapshot{notices: sorted(ns), gen: 1})
	v := b.View()
	var got []string
	var after *Cursor
	for {
		page, more := v.List("", after, 2)
		for _, n := range page {
			got = append(got, n.ID)
		}
		if !more {
			break
		}
		last := page[len(page)-1]
		after = &Cursor{Pinned: last.Pinned, PublishAt: last.PublishAt, ID: last.ID}
	}
	if strings.Join(got, "") != "cdba" {
		t.Fatalf("order %v, want pinned, then newest, ties by id descending", got)
	}
	if p, _ := v.List("m1", nil, 10); len(p) != 1 || p[0].ID != "e" {
		t.Fatalf("merchant list %v", p)
	}
}

func sorted(ns []Notice) []Notice {
	out := append([]Notice(nil), ns...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if compare(out[j], out[i]) < 0 {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}
