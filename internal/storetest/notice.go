package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// RunNotices holds a store to notice.Store: notices, member activity and
// badge seen times. open must return a store that implements it.
func RunNotices(t *testing.T, open func(t *testing.T) ledger.Store) {
	setup := func(t *testing.T) (*env, notice.Store) {
		e := newEnv(t, open, true)
		ns, ok := e.raw.(notice.Store)
		if !ok {
			t.Fatalf("%T does not implement notice.Store", e.raw)
		}
		return e, ns
	}
	at := func(d time.Duration) time.Time { return ledger.MicroTime(epoch.Add(d)) }

	t.Run("notices are stored, found by id, and listed while not ended", func(t *testing.T) {
		e, ns := setup(t)
		m := e.merchant(100, 365)
		all := notice.Notice{ID: "n-all", Title: "T", Body: "B\nline", ImageURL: "https://x.example/a.png", Pinned: true,
			Audience: notice.AudienceAll, PublishAt: at(0), RampSeconds: 600, CreatedAt: at(0)}
		toM := notice.Notice{ID: "n-m", Title: "M", Body: "B", Audience: notice.AudienceMerchant, MerchantID: m.ID,
			PublishAt: at(time.Hour), EndsAt: at(2 * time.Hour), CreatedAt: at(0)}
		ended := notice.Notice{ID: "n-ended", Title: "E", Body: "B", Audience: notice.AudienceAll,
			PublishAt: at(0), EndsAt: at(time.Minute), CreatedAt: at(0)}
		for _, n := range []notice.Notice{all, toM, ended} {
			if err := ns.CreateNotice(e.ctx, n); err != nil {
				t.Fatalf("create %s: %v", n.ID, err)
			}
		}
		wantCode(t, ns.CreateNotice(e.ctx, all), ledger.CodeConflict)
		bad := toM
		bad.ID, bad.MerchantID = "n-bad", "no-such-merchant"
		wantCode(t, ns.CreateNotice(e.ctx, bad), ledger.CodeMerchantNotFound)
		got, err := ns.Notice(e.ctx, "n-m")
		if err != nil || got != toM {
			t.Fatalf("Notice: %+v, %v; stored %+v", got, err, toM)
		}
		_, err = ns.Notice(e.ctx, "nope")
		wantCode(t, err, notice.CodeNoticeNotFound)

		ids := func(now time.Time, limit int) []string {
			ns, err := ns.CurrentNotices(e.ctx, now, limit)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, n := range ns {
				out = append(out, n.ID)
			}
			return out
		}
		if got := ids(at(30*time.Second), 0); !slices.Equal(got, []string{"n-m", "n-ended", "n-all"}) &&
			!slices.Equal(got, []string{"n-m", "n-all", "n-ended"}) {
			t.Errorf("current at +30s: %v (scheduled ones included, newest publish first)", got)
		}
		if got := ids(at(time.Minute), 0); len(got) != 2 || slices.Contains(got, "n-ended") {
			t.Errorf("current at its end: %v, want the ended notice gone", got)
		}
		if got := ids(at(3*time.Hour), 0); !slices.Equal(got, []string{"n-all"}) {
			t.Errorf("current at +3h: %v", got)
		}
		if got := ids(at(0), 1); len(got) != 1 {
			t.Errorf("limit 1: %v", got)
		}
	})

	t.Run("member activity lists their merchants and active holds", func(t *testing.T) {
		e, ns := setup(t)
		ma, mb := e.merchant(100, 365), e.merchant(100, 365)
		sa, sb := e.shop(ma), e.shop(mb)
		mem, other := e.member(), e.member()
		a, err := ns.MemberActivity(e.ctx, mem.ID)
		if err != nil || len(a.Merchants) != 0 || len(a.Holds) != 0 || a.Merchants == nil || a.Holds == nil {
			t.Fatalf("a new member's activity %+v, %v: want empty, not nil", a, err)
		}
		e.earn(mem, sa, "r1", 10_000)
		e.earn(mem, sa, "r2", 10_000)
		e.earn(mem, sb, "r3", 10_000)
		e.earn(other, sb, "r4", 10_000)
		h1 := e.hold(mem, sa, 10, 600)
		h2 := e.hold(mem, sb, 20, 60)
		h3 := e.hold(mem, sb, 5, 60)
		e.do(ledger.Op{Kind: ledger.OpVoid, HoldID: h3.Hold.ID})
		a, err = ns.MemberActivity(e.ctx, mem.ID)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(a.Merchants)
		want := []string{ma.ID, mb.ID}
		slices.Sort(want)
		if !slices.Equal(a.Merchants, want) {
			t.Errorf("merchants %v, want %v once each", a.Merchants, want)
		}
		if len(a.Holds) != 2 || a.Holds[0].ID != h2.Hold.ID || a.Holds[1].ID != h1.Hold.ID ||
			a.Holds[0].Points != 20 || !a.Holds[0].ExpiresAt.Equal(h2.Hold.ExpiresAt) {
			t.Errorf("holds %+v, want the two active ones, soonest expiry first", a.Holds)
		}
	})

	t.Run("seen times keep the latest per member", func(t *testing.T) {
		e, ns := setup(t)
		m1, m2 := e.member(), e.member()
		if at0, err := ns.BadgesSeen(e.ctx, m1.ID); err != nil || !at0.IsZero() {
			t.Fatalf("never seen: %v, %v", at0, err)
		}
		if err := ns.SaveBadgesSeen(e.ctx, []notice.Seen{{MemberID: m1.ID, At: at(time.Minute)}, {MemberID: m1.ID, At: at(3 * time.Minute)},
			{MemberID: m1.ID, At: at(2 * time.Minute)}, {MemberID: m2.ID, At: at(time.Hour)}}); err != nil {
			t.Fatal(err)
		}
		if err := ns.SaveBadgesSeen(e.ctx, []notice.Seen{{MemberID: m2.ID, At: at(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			id   string
			want time.Time
		}{{m1.ID, at(3 * time.Minute)}, {m2.ID, at(time.Hour)}} {
			got, err := ns.BadgesSeen(e.ctx, c.id)
			if err != nil || !got.Equal(c.want) {
				t.Errorf("seen %v, %v; want %v (the latest, never an older one)", got, err, c.want)
			}
		}
		if err := ns.SaveBadgesSeen(e.ctx, nil); err != nil {
			t.Errorf("nothing to save: %v", err)
		}
	})
}
