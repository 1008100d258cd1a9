package surge

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func dayWorkload(t *testing.T, profile string, stores int) *workload {
	t.Helper()
	cfg := &Config{Target: "http://x", AdminKey: "k", Profile: profile, Duration: 130 * time.Second, Rate: 100}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w := &workload{cfg: cfg}
	for range stores {
		w.stores = append(w.stores, &storeFx{})
	}
	return w
}

// The day profile squeezes 09:00–22:00 into the run: 130 s makes 10 s an hour.
func TestDayProfileFollowsStoreHoursAndPeaks(t *testing.T) {
	w := dayWorkload(t, ProfileDay, 10)
	at := func(hhmm string) time.Duration {
		c, err := clock(hhmm)
		if err != nil {
			t.Fatal(err)
		}
		return (c - 9*time.Hour) / 360 // an hour of the day is 10 s of the run
	}
	if r := w.rateAt(at("09:00")); r <= 0 || r > 15 {
		t.Errorf("at opening only the first store is open: rate %g, want about a tenth of 100", r)
	}
	mid := w.rateAt(at("16:00"))
	if math.Abs(mid-100) > 5 {
		t.Errorf("mid-afternoon, all stores open, between peaks: rate %g, want about 100", mid)
	}
	lunch, evening := w.rateAt(at("12:30")), w.rateAt(at("19:00"))
	if lunch < 290 || lunch > 320 || evening < 240 || evening > 270 {
		t.Errorf("peaks: lunch %g (want ~300), evening %g (want ~250)", lunch, evening)
	}
	if r := w.rateAt(at("21:59")); r > 15 {
		t.Errorf("just before closing only the last store is open: rate %g", r)
	}
	// Stores chosen are open: at 09:05 only store 0 is.
	rng := newTestRand()
	for range 50 {
		if st := w.pickStore(rng, at("09:05")); st != w.stores[0] {
			t.Fatalf("09:05: picked a closed store")
		}
	}
	if w.readRateAt(at("12:30")) != lunch {
		t.Errorf("reads follow POS arrivals one to one by default")
	}
	if w.membersAt(0) != w.cfg.Members {
		t.Errorf("a flat profile signs every member up at the start")
	}
}

func TestCustomProfileFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rush.toml")
	os.WriteFile(path, []byte(`
name = "launch with a badge rush"
growth = "exponential"
growth_from = 0.1
members_from = 0.2
reads_per_pos = 3
[mix]
earn = 1
redeem = 0
hold = 1
[[read_rush]]
at = "50%"
for = "10s"
factor = 10
notice = true
notice_ramp = "30s"
`), 0o644)
	w := dayWorkload(t, path, 4)
	sh := w.cfg.shape
	if sh.Name != "launch with a badge rush" || sh.Mix != (Mix{Earn: 1, Hold: 1}) ||
		!sh.Rushes[0].Notice || sh.Rushes[0].NoticeRamp.Duration != 30*time.Second {
		t.Errorf("parsed %+v", sh)
	}
	if from, to := sh.Rushes[0].window(w.cfg.Duration); from != 65*time.Second || to != 75*time.Second {
		t.Errorf("rush window %s–%s, want 1m5s–1m15s", from, to)
	}
	if r0 := w.rateAt(0); math.Abs(r0-10) > 0.01 {
		t.Errorf("growth starts at 10%% of 100: %g", r0)
	}
	if m0 := w.membersAt(0); m0 != 40 {
		t.Errorf("members_from 0.2 of 200: %d", m0)
	}
	if m1 := w.membersAt(w.cfg.Duration); m1 != 200 {
		t.Errorf("all members at the end: %d", m1)
	}
	in, out := w.readRateAt(66*time.Second), w.readRateAt(64*time.Second)
	if math.Abs(in/w.rateAt(66*time.Second)-30) > 1e-9 || math.Abs(out/w.rateAt(64*time.Second)-3) > 1e-9 {
		t.Errorf("reads: %g per POS in the rush (want 30), %g before (want 3)", in/w.rateAt(66*time.Second), out/w.rateAt(64*time.Second))
	}
}

func TestBadProfilesAreRefusedWithTheirReason(t *testing.T) {
	for _, c := range []struct{ file, want string }{
		{`growth = "viral"`, "growth must be"},
		{`grwoth = "flat"`, `unknown key "grwoth"`},
		{"[day]\nopens = \"22:00\"\ncloses = \"09:00\"", "must be after"},
		{"[day]\nopens = \"9am\"\ncloses = \"22:00\"", "HH:MM"},
		{"[day]\nopens = \"09:00\"\ncloses = \"22:00\"\n[[day.peak]]\nat = \"12:00\"\nwidth = \"1h\"\nfactor = 0.5", "factor at least 1"},
		{"[[read_rush]]\nat = \"150%\"\nfor = \"1m\"\nfactor = 2", "share of the run"},
		{"[mix]\nearn = -1\nhold = 2", "mix weights"},
		{"[[read_rush]]\nat = \"1m\"\nfor = \"1m\"\nfactor = 2\nnotice_ramp = \"48h\"", "notice_ramp"},
	} {
		_, err := ParseShape("p.toml", []byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one containing %q", c.file, err, c.want)
		}
	}
	if _, err := LoadShape("viral"); err == nil || !strings.Contains(err.Error(), "FILE.toml") {
		t.Errorf("unknown profile name: %v", err)
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
