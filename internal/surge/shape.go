package surge

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ProfileDay compresses a trading day into the run: stores open and close
// at staggered hours, with a lunch and an evening peak.
const ProfileDay = "day"

// Shape is a profile as data: how the POS rate, the members and the
// member-app reads move over a run. The built-in profiles are shapes, and
// --profile FILE.toml reads one (docs/surge.md shows the format).
type Shape struct {
	Name string `toml:"name"`
	// Growth is "flat" or "exponential": from GrowthFrom × --rate at the
	// start to all of it at the end, the steep climb of a launch.
	Growth     string  `toml:"growth"`
	GrowthFrom float64 `toml:"growth_from"`
	// MembersFrom is the share of --members signed up at the start; with
	// exponential growth the rest sign up along the same curve.
	MembersFrom float64 `toml:"members_from"`
	// Day, when set, maps the run onto a trading day: store hours and peaks.
	Day *Day `toml:"day"`
	// Mix weighs the kinds of POS sessions.
	Mix Mix `toml:"mix"`
	// ReadsPerPOS is member-app reads per POS arrival (default 1).
	ReadsPerPOS float64 `toml:"reads_per_pos"`
	// Rushes multiply the app reads for a while: a red badge's stampede.
	Rushes []Rush `toml:"read_rush"`
}

// Day is a trading day squeezed into the run's duration.
type Day struct {
	Opens  string `toml:"opens"`  // "HH:MM", the first store opens
	Closes string `toml:"closes"` // "HH:MM", the last store closes
	// Stagger spreads the stores' own hours: each opens up to Stagger after
	// Opens and closes up to Stagger before Closes.
	Stagger duration `toml:"stagger"`
	Peaks   []Peak   `toml:"peak"`

	opens, closes time.Duration // parsed: since midnight
}

// Peak is a bell-shaped rise of the POS rate around a time of day: Factor at
// its top, half-way back within about Width of it.
type Peak struct {
	At     string   `toml:"at"` // "HH:MM"
	Width  duration `toml:"width"`
	Factor float64  `toml:"factor"`

	at time.Duration
}

// Mix weighs earn, redeem and hold sessions (any scale; default 60/20/20).
type Mix struct {
	Earn   float64 `toml:"earn"`
	Redeem float64 `toml:"redeem"`
	Hold   float64 `toml:"hold"`
}

// Rush multiplies member-app reads by Factor for For, starting At (a
// duration like "2m" or a share of the run like "33%"). With Notice, surge
// publishes a notice as the rush begins: the red badge that causes it.
type Rush struct {
	At     string   `toml:"at"`
	For    duration `toml:"for"`
	Factor float64  `toml:"factor"`
	Notice bool     `toml:"notice"`
	// NoticeRamp spreads the notice's badge over this long (ramp_seconds).
	NoticeRamp duration `toml:"notice_ramp"`

	frac  float64 // At as a share of the run, when given as "N%"
	after time.Duration
}

// duration reads "45m" from TOML.
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (e.g. 45m, 1h30m)", b)
	}
	d.Duration = v
	return nil
}

// builtinShape returns the shape of a built-in profile.
func builtinShape(name string) (Shape, bool) {
	switch name {
	case ProfileSteady:
		return Shape{Name: name, Growth: "flat"}, true
	case ProfileLaunch:
		return Shape{Name: name, Growth: "exponential", GrowthFrom: 0.05, MembersFrom: 0.1}, true
	case ProfileBadge:
		return Shape{Name: name, Growth: "flat",
			Rushes: []Rush{{At: "33.3333%", For: duration{time.Minute}, Factor: 20, Notice: true}}}, true
	case ProfileDay:
		return Shape{Name: name, Growth: "flat", Day: &Day{Opens: "09:00", Closes: "22:00",
			Stagger: duration{time.Hour}, Peaks: []Peak{
				{At: "12:30", Width: duration{45 * time.Minute}, Factor: 3},
				{At: "19:00", Width: duration{time.Hour}, Factor: 2.5},
			}}}, true
	}
	return Shape{}, false
}

// LoadShape returns a built-in profile by name, or reads a TOML file when
// profile ends in .toml.
func LoadShape(profile string) (Shape, error) {
	if s, ok := builtinShape(profile); ok {
		return s, s.check()
	}
	if !strings.HasSuffix(profile, ".toml") {
		return Shape{}, fmt.Errorf("--profile must be steady, launch, badge, day or a FILE.toml, got %q", profile)
	}
	b, err := os.ReadFile(profile)
	if err != nil {
		return Shape{}, fmt.Errorf("--profile: %w", err)
	}
	return ParseShape(profile, b)
}

// ParseShape reads a profile file; unknown keys are an error so that a typo
// does not silently rehearse something else.
func ParseShape(name string, b []byte) (Shape, error) {
	var s Shape
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&s)
	if err != nil {
		return Shape{}, fmt.Errorf("profile %s: %w", name, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return Shape{}, fmt.Errorf("profile %s: unknown key %q", name, un[0].String())
	}
	if s.Name == "" {
		s.Name = name
	}
	if err := s.check(); err != nil {
		return Shape{}, fmt.Errorf("profile %s: %w", name, err)
	}
	return s, nil
}

// check validates the shape and fills its defaults and parsed fields.
func (s *Shape) check() error {
	switch s.Growth {
	case "":
		s.Growth = "flat"
	case "flat", "exponential":
	default:
		return fmt.Errorf("growth must be flat or exponential, got %q", s.Growth)
	}
	if s.Growth == "exponential" {
		if s.GrowthFrom == 0 {
			s.GrowthFrom = 0.05
		}
		if s.GrowthFrom <= 0 || s.GrowthFrom > 1 {
			return fmt.Errorf("growth_from must be in (0, 1], got %g", s.GrowthFrom)
		}
	}
	if s.MembersFrom < 0 || s.MembersFrom > 1 {
		return fmt.Errorf("members_from must be in [0, 1], got %g", s.MembersFrom)
	}
	if s.Mix == (Mix{}) {
		s.Mix = Mix{Earn: 60, Redeem: 20, Hold: 20}
	}
	if s.Mix.Earn < 0 || s.Mix.Redeem < 0 || s.Mix.Hold < 0 || s.Mix.Earn+s.Mix.Redeem+s.Mix.Hold <= 0 {
		return fmt.Errorf("mix weights must be zero or more with a positive sum")
	}
	if s.ReadsPerPOS == 0 {
		s.ReadsPerPOS = 1
	}
	if s.ReadsPerPOS < 0 || s.ReadsPerPOS > 1000 {
		return fmt.Errorf("reads_per_pos must be in [0, 1000], got %g", s.ReadsPerPOS)
	}
	for i := range s.Rushes {
		r := &s.Rushes[i]
		if r.Factor <= 0 || r.For.Duration <= 0 {
			return fmt.Errorf("read_rush %d: factor and for must be positive", i+1)
		}
		if r.NoticeRamp.Duration < 0 || r.NoticeRamp.Duration > 24*time.Hour {
			return fmt.Errorf("read_rush %d: notice_ramp must be from 0 to 24h", i+1)
		}
		if p, ok := strings.CutSuffix(r.At, "%"); ok {
			f, err := strconv.ParseFloat(p, 64)
			if err != nil || f < 0 || f > 100 {
				return fmt.Errorf("read_rush %d: at %q is not a share of the run (0%%–100%%)", i+1, r.At)
			}
			r.frac = f / 100
		} else {
			d, err := time.ParseDuration(r.At)
			if err != nil || d < 0 {
				return fmt.Errorf("read_rush %d: at %q is neither a duration (2m) nor a share (33%%)", i+1, r.At)
			}
			r.frac, r.after = -1, d
		}
	}
	if d := s.Day; d != nil {
		var err error
		if d.opens, err = clock(d.Opens); err != nil {
			return fmt.Errorf("day.opens: %w", err)
		}
		if d.closes, err = clock(d.Closes); err != nil {
			return fmt.Errorf("day.closes: %w", err)
		}
		if d.closes <= d.opens {
			return fmt.Errorf("day.closes (%s) must be after day.opens (%s)", d.Closes, d.Opens)
		}
		if d.Stagger.Duration < 0 || 2*d.Stagger.Duration >= d.closes-d.opens {
			return fmt.Errorf("day.stagger must leave every store open for a while")
		}
		for i := range d.Peaks {
			p := &d.Peaks[i]
			if p.at, err = clock(p.At); err != nil {
				return fmt.Errorf("day.peak %d: %w", i+1, err)
			}
			if p.Width.Duration <= 0 || p.Factor < 1 {
				return fmt.Errorf("day.peak %d: width must be positive and factor at least 1", i+1)
			}
		}
	}
	return nil
}

func clock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a time of day HH:MM", s)
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute, nil
}

// growth is the share of the rate (and of the members to come) reached at
// fraction f of the run.
func (s *Shape) growth(f float64) float64 {
	if s.Growth != "exponential" {
		return 1
	}
	return s.GrowthFrom * math.Pow(1/s.GrowthFrom, f)
}

// clockAt is the time of day at fraction f of the run.
func (d *Day) clockAt(f float64) time.Duration {
	return d.opens + time.Duration(f*float64(d.closes-d.opens))
}

// storeHours gives store i of n its own hours inside the day, spread evenly
// over the stagger so that the first store opens at Opens and the last
// closes at Closes.
func (d *Day) storeHours(i, n int) (opens, closes time.Duration) {
	if n <= 1 {
		return d.opens, d.closes
	}
	k := float64(i) / float64(n-1)
	opens = d.opens + time.Duration(k*float64(d.Stagger.Duration))
	closes = d.closes - time.Duration((1-k)*float64(d.Stagger.Duration))
	return opens, closes
}

// openShare is the share of n stores open at clock c.
func (d *Day) openShare(c time.Duration, n int) float64 {
	open := 0
	for i := range n {
		if o, cl := d.storeHours(i, n); c >= o && c < cl {
			open++
		}
	}
	return float64(open) / float64(max(n, 1))
}

// peakFactor multiplies the rate at clock c: 1 away from every peak.
func (d *Day) peakFactor(c time.Duration) float64 {
	f := 1.0
	for _, p := range d.Peaks {
		x := float64(c-p.at) / float64(p.Width.Duration)
		f += (p.Factor - 1) * math.Exp(-x*x*math.Ln2) // half of the rise at ±Width
	}
	return f
}

// window is when a rush runs in a run of length d. It lasts at most a third
// of the run, so that a short rehearsal still has time before and after.
func (r Rush) window(d time.Duration) (from, to time.Duration) {
	from = r.after
	if r.frac >= 0 {
		from = time.Duration(r.frac * float64(d))
	}
	return from, from + min(r.For.Duration, d/3)
}

// readFactor multiplies member-app reads at offset t of a run of length d.
func (s *Shape) readFactor(t, d time.Duration) float64 {
	f := s.ReadsPerPOS
	for _, r := range s.Rushes {
		if from, to := r.window(d); t >= from && t < to {
			f *= r.Factor
		}
	}
	return f
}
