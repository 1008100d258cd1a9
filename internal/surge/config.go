// Package surge rehearses a launch surge against a pointd server: it sets up
// synthetic merchants, stores, POS keys and members through the admin API,
// drives open-loop POS and member-app traffic with the retry behaviour of a
// well-written POS, injects faults, and ends with an integrity verdict that
// compares every acknowledged operation with what the server holds.
package surge

import (
	"fmt"
	"strings"
	"time"
)

// Profiles.
const (
	ProfileSteady = "steady" // constant rate and members
	ProfileLaunch = "launch" // members and rate ramp steeply over the run
	ProfileBadge  = "badge"  // app reads ×20 for a minute in the middle of the run
	// ProfileDay (shape.go) and FILE.toml profiles are described as a Shape.
)

// Fault kinds.
const (
	FaultServerKill = "server-kill" // SIGKILL the spawned server, restart it on the same data and port
	FaultConnDrop   = "conn-drop"   // client connections cut right after a request was written
	FaultDBSlow     = "db-slow"     // latency added by a TCP proxy in front of PostgreSQL
	FaultDBRestart  = "db-restart"  // restart the machine's PostgreSQL cluster
)

// Fault is one --fault KIND@T[:D].
type Fault struct {
	Kind string
	At   time.Duration // after the load starts
	For  time.Duration // conn-drop, db-slow: how long (0: conn-drop default 5s)
}

func (f Fault) String() string {
	if f.For > 0 {
		return fmt.Sprintf("%s@%s:%s", f.Kind, f.At, f.For)
	}
	return fmt.Sprintf("%s@%s", f.Kind, f.At)
}

// ParseFault reads KIND@T[:D], e.g. server-kill@30s, conn-drop@10s:5s,
// db-slow@1m:30s. A bare KIND means at half the run (T filled in by Run).
func ParseFault(s string) (Fault, error) {
	kind, rest, hasAt := strings.Cut(s, "@")
	f := Fault{Kind: kind, At: -1}
	switch kind {
	case FaultServerKill, FaultConnDrop, FaultDBSlow, FaultDBRestart:
	default:
		return f, fmt.Errorf("fault %q: unknown kind %q (server-kill, conn-drop, db-slow, db-restart)", s, kind)
	}
	if hasAt {
		at, dur, hasDur := strings.Cut(rest, ":")
		d, err := time.ParseDuration(at)
		if err != nil || d < 0 {
			return f, fmt.Errorf("fault %q: bad time %q (e.g. 30s, 2m)", s, at)
		}
		f.At = d
		if hasDur {
			d, err := time.ParseDuration(dur)
			if err != nil || d <= 0 {
				return f, fmt.Errorf("fault %q: bad duration %q (e.g. 10s)", s, dur)
			}
			f.For = d
		}
	}
	switch {
	case f.Kind == FaultDBSlow && f.For == 0:
		return f, fmt.Errorf("fault %q: db-slow needs a duration: db-slow@T:D", s)
	case (f.Kind == FaultServerKill || f.Kind == FaultDBRestart) && f.For != 0:
		return f, fmt.Errorf("fault %q: %s takes no duration", s, f.Kind)
	}
	if f.Kind == FaultConnDrop && f.For == 0 {
		f.For = 5 * time.Second
	}
	return f, nil
}

// Config is one surge run.
type Config struct {
	Target   string // base URL; empty when Spawn is set (then surge picks the address)
	AdminKey string // empty when Spawn is set (surge creates one)

	// Spawn, when not nil, makes surge start `Binary serve SpawnArgs… --addr …`
	// itself; it is needed for the server-kill fault and for running
	// `pointd verify` on the server's data after the run.
	Spawn  []string
	Binary string // the pointd binary (default: this executable)
	LogDir string // where the spawned server's logs go (default: a temp dir)

	Profile  string // a built-in profile's name or a FILE.toml
	Duration time.Duration
	Rate     float64 // POS operations per second (peak for launch)
	Members  int     // synthetic members (final count for launch)
	Stores   int     // synthetic stores, each with its own store-bound POS key
	Seed     uint64
	Faults   []Fault
	Report   string // HTML report path ("" none)
	Baseline bool   // measure POST /v1/ping first

	RequestTimeout time.Duration // one attempt of a request
	MaxInFlight    int           // open-loop arrivals beyond this are counted as client-saturated

	shape Shape // the profile, filled in by Validate
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	if c.Profile == "" {
		c.Profile = ProfileSteady
	}
	sh, err := LoadShape(c.Profile)
	if err != nil {
		return err
	}
	c.shape = sh
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Rate > 100_000 {
		return fmt.Errorf("--rate %g is above 100000/s", c.Rate)
	}
	if c.Members <= 0 {
		c.Members = 200
	}
	if c.Stores <= 0 {
		c.Stores = 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4096
	}
	if c.Spawn == nil {
		if c.Target == "" {
			return fmt.Errorf("--target is required (or --spawn / --spawn-data to let surge start the server)")
		}
		if c.AdminKey == "" {
			return fmt.Errorf("--admin-key is required against a server surge did not start")
		}
	} else if c.Target != "" {
		return fmt.Errorf("--target and --spawn exclude each other: surge picks the address of the server it starts")
	}
	c.Target = strings.TrimRight(c.Target, "/")
	for i, f := range c.Faults {
		if f.At < 0 {
			c.Faults[i].At = c.Duration / 2
			f = c.Faults[i]
		}
		if f.At >= c.Duration {
			return fmt.Errorf("fault %s: at %s is not within the run of %s", f, f.At, c.Duration)
		}
		switch f.Kind {
		case FaultServerKill:
			if c.Spawn == nil {
				return fmt.Errorf("fault %s: surge can kill and restart only a server it started (--spawn or --spawn-data)", f)
			}
		case FaultDBSlow:
			if c.Spawn == nil || spawnDB(c.Spawn) == "" {
				return fmt.Errorf("fault %s: needs a server surge starts on PostgreSQL (--spawn \"--db postgres://…\"): surge puts its proxy between them", f)
			}
		}
	}
	return nil
}

// spawnDB returns the --db value of the serve arguments ("" for SQLite).
func spawnDB(args []string) string {
	return flagValue(args, "db")
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return ""
}
