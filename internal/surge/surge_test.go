package surge

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	for in, want := range map[string]Fault{
		"server-kill@30s":  {FaultServerKill, 30 * time.Second, 0},
		"conn-drop@10s:5s": {FaultConnDrop, 10 * time.Second, 5 * time.Second},
		"conn-drop@1m":     {FaultConnDrop, time.Minute, 5 * time.Second},
		"db-slow@1m:30s":   {FaultDBSlow, time.Minute, 30 * time.Second},
		"db-restart@2m":    {FaultDBRestart, 2 * time.Minute, 0},
		"server-kill":      {FaultServerKill, -1, 0},
	} {
		got, err := ParseFault(in)
		if err != nil || got != want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"kill@1s", "server-kill@x", "db-slow@1s", "server-kill@1s:2s", "conn-drop@1s:-1s"} {
		if _, err := ParseFault(bad); err == nil {
			t.Errorf("ParseFault(%q): no error", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	c := Config{Target: "http://x/", AdminKey: "k", Duration: 10 * time.Second, Faults: []Fault{{Kind: FaultConnDrop, At: -1, For: time.Second}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Target != "http://x" || c.Faults[0].At != 5*time.Second || c.Profile != ProfileSteady {
		t.Errorf("defaults not filled: %+v", c)
	}
	for _, bad := range []Config{
		{Target: "http://x", AdminKey: "k", Faults: []Fault{{Kind: FaultServerKill, At: time.Second}}},
		{Target: "http://x", AdminKey: "k", Profile: "viral"},
		{Target: "http://x"},
		{Spawn: []string{"--data", "d"}, Target: "http://x"},
		{Spawn: []string{"--data", "d"}, Duration: time.Second, Faults: []Fault{{Kind: FaultServerKill, At: 2 * time.Second}}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v): no error", bad)
		}
	}
}

func TestProfiles(t *testing.T) {
	w := &workload{cfg: &Config{Profile: ProfileLaunch, Duration: 100 * time.Second, Rate: 200, Members: 1000}}
	w.cfg.shape, _ = LoadShape(ProfileLaunch)
	if r0, r1 := w.rateAt(0), w.rateAt(99*time.Second); math.Abs(r0-10) > 0.01 || r1 < 180 {
		t.Errorf("launch rate from %g to %g, want 10 to ~200", r0, r1)
	}
	if m0, m1 := w.membersAt(0), w.membersAt(100*time.Second); m0 != 100 || m1 != 1000 {
		t.Errorf("launch members from %d to %d, want 100 to 1000", m0, m1)
	}
	w.cfg.Profile = ProfileBadge
	w.cfg.shape, _ = LoadShape(ProfileBadge)
	if w.readRateAt(50*time.Second) != 20*w.readRateAt(10*time.Second) {
		t.Errorf("badge: reads not ×20 in the window")
	}
}

func TestChartIsSelfContainedSVG(t *testing.T) {
	s := chart("t", "/s", []series{{"a", "#000", []float64{1, 2, math.NaN(), 4}}}, []mark{{1, "kill"}})
	if !strings.HasPrefix(s, "<svg") || strings.Contains(s, "http://") && !strings.Contains(s, `xmlns="http://www.w3.org/2000/svg"`) ||
		strings.Count(s, "<polyline") != 2 || !strings.Contains(s, "kill") {
		t.Errorf("unexpected SVG: %s", s)
	}
}
