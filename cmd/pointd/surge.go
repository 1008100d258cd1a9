package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/pointd/pointd/internal/surge"
)

// faultList is a repeatable --fault flag.
type faultList []surge.Fault

func (f *faultList) String() string { return fmt.Sprint(*f) }
func (f *faultList) Set(s string) error {
	x, err := surge.ParseFault(s)
	if err != nil {
		return err
	}
	*f = append(*f, x)
	return nil
}

func cmdSurge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("surge", stderr)
	var cfg surge.Config
	var faults faultList
	fs.StringVar(&cfg.Target, "target", "", "base URL of the server to rehearse against, e.g. http://127.0.0.1:7070")
	fs.StringVar(&cfg.AdminKey, "admin-key", "", "an admin API key of the target (not needed with --spawn: surge creates one)")
	fs.StringVar(&cfg.Profile, "profile", "steady", "steady, launch (members and rate ramp steeply), badge (app reads ×20 for a minute), day (store hours, lunch and evening peaks) or a FILE.toml (docs/surge.md)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "length of the load (default 60s)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "POS operations per second, Poisson arrivals (launch: the peak; default 100)")
	fs.IntVar(&cfg.Members, "members", 0, "synthetic members (launch: at the end; default 200)")
	fs.IntVar(&cfg.Stores, "stores", 0, "synthetic stores, each with its own POS key (default 20)")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "seed of the workload's randomness")
	fs.Var(&faults, "fault", "KIND@T[:D], repeatable: server-kill@T, conn-drop@T[:D], db-slow@T:D, db-restart@T (restarts this machine's PostgreSQL)")
	fs.StringVar(&cfg.Report, "report", "", "write a self-contained HTML report to this file")
	fs.BoolVar(&cfg.Baseline, "against-baseline", false, "measure POST /v1/ping first and report earn throughput as a fraction of it")
	spawn := fs.String("spawn", "", `start the server itself: the arguments of "pointd serve", e.g. "--db postgres://… --db-conns 8" (needs --data or --db)`)
	spawnData := fs.String("spawn-data", "", "start the server itself on SQLite in this folder (same as --spawn \"--data DIR\")")
	fs.StringVar(&cfg.LogDir, "spawn-logs", "", "folder for the spawned server's logs (default: a new temporary folder)")
	fs.StringVar(&cfg.Binary, "server-binary", "", "the pointd binary --spawn runs (default: this one)")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 0, "client timeout of one attempt (default 5s)")
	cleanup := fs.String("cleanup", "", "retire the synthetic data of run RUNID on --target instead of running a load: revoke its keys, suspend its merchants, stores and members")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkSurgeFlags(fs, &cfg, *spawn); err != nil {
		return err
	}
	if *cleanup != "" {
		if cfg.Target == "" || cfg.AdminKey == "" {
			return fmt.Errorf("--cleanup needs --target and --admin-key")
		}
		_, err := surge.Cleanup(ctx, cfg.Target, cfg.AdminKey, *cleanup, stdout)
		return err
	}
	switch {
	case *spawn != "" && *spawnData != "":
		return fmt.Errorf("give --spawn or --spawn-data, not both")
	case *spawn != "":
		cfg.Spawn = strings.Fields(*spawn)
	case *spawnData != "":
		cfg.Spawn = []string{"--data", *spawnData}
	}
	cfg.Faults = faults
	res, err := surge.Run(ctx, cfg, stdout, stderr)
	if err != nil {
		return err
	}
	if !res.Clean() {
		return exitError(1)
	}
	return nil
}

// checkSurgeFlags refuses what surge would only find out once it ran.
func checkSurgeFlags(fs *flagSet, cfg *surge.Config, spawn string) error {
	switch {
	case cfg.Target != "" && !strings.HasPrefix(cfg.Target, "http://") && !strings.HasPrefix(cfg.Target, "https://"):
		return fs.bad("target", "must be the server's base URL, e.g. http://127.0.0.1:7070")
	case cfg.Duration < 0:
		return fs.bad("duration", "must be 0 (60s) or positive, e.g. 2m")
	case cfg.Rate < 0:
		return fs.bad("rate", "must be 0 (100/s) or positive")
	case cfg.Members < 0:
		return fs.bad("members", "must be 0 (200) or positive")
	case cfg.Stores < 0:
		return fs.bad("stores", "must be 0 (20) or positive")
	case cfg.RequestTimeout < 0:
		return fs.bad("request-timeout", "must be 0 (5s) or positive")
	case fs.Lookup("spawn").Value.String() != "" && strings.TrimSpace(spawn) == "":
		return fs.bad("spawn", `must be the arguments of "pointd serve", e.g. "--data DIR"`)
	}
	if _, err := surge.LoadShape(cfg.Profile); err != nil {
		return fs.bad("profile", "%v", err)
	}
	if cfg.Report != "" {
		if st, err := os.Stat(filepath.Dir(cfg.Report)); err != nil || !st.IsDir() {
			return fs.bad("report", "its folder %s does not exist", filepath.Dir(cfg.Report))
		}
	}
	if cfg.LogDir != "" {
		if st, err := os.Stat(cfg.LogDir); err == nil && !st.IsDir() {
			return fs.bad("spawn-logs", "must be a folder, and this is a file")
		}
	}
	if sd := fs.Lookup("spawn-data").Value.String(); sd != "" {
		if st, err := os.Stat(sd); err == nil && !st.IsDir() {
			return fs.bad("spawn-data", "must be a folder, and this is a file")
		}
	}
	if cfg.Binary != "" {
		if st, err := os.Stat(cfg.Binary); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return fs.bad("server-binary", "must be an executable pointd binary")
		}
	}
	return nil
}
