package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/repair"
)

// cmdRepair runs pointd incident and pointd reconcile (docs/repair.md).
func cmdRepair(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	if name == "incident" {
		return cmdIncident(ctx, args, stdout, stderr)
	}
	return cmdReconcile(ctx, args, stdout, stderr)
}

func cmdIncident(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("incident", stderr)
	var d dbFlags
	d.register(fs)
	from := fs.String("from", "", "start of the window: an RFC 3339 time, or a date YYYY-MM-DD (midnight, local time)")
	to := fs.String("to", "", "end of the window, excluded: an RFC 3339 time or a date")
	store := fs.String("store", "", "list only the operations of this store")
	asJSON := fs.Bool("json", false, "print the report as one JSON document")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := d.validate(); err != nil {
		return err
	}
	var q repair.IncidentQuery
	var err error
	if q.From, err = parseWhen("--from", *from); err != nil {
		return err
	}
	if q.To, err = parseWhen("--to", *to); err != nil {
		return err
	}
	if !q.To.After(q.From) {
		return fmt.Errorf("--to (%s) must be after --from (%s)", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	q.StoreID = *store
	src, closeDB, err := openRepair(ctx, &d, stderr)
	if err != nil {
		return err
	}
	defer closeDB()
	_, err = repair.WriteIncident(ctx, src, q, stdout, *asJSON)
	return err
}

// parseWhen reads a time of the command line: RFC 3339, or a date that
// means its midnight in the local time zone.
func parseWhen(flagName, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, fmt.Errorf("%s is required", flagName)
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, v, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%s %q is neither an RFC 3339 time (2026-03-02T16:00:00+09:00) nor a date (2026-03-02)", flagName, v)
}

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("reconcile", stderr)
	var d dbFlags
	d.register(fs)
	receipts := fs.String("receipts", "", "the POS's record of purchases, a CSV file (docs/repair.md)")
	fix := fs.String("fix", "", "with --receipts: write the proposed corrections to this file (it must not exist)")
	apply := fs.String("apply", "", "apply a corrections file written by --fix (and reviewed)")
	asJSON := fs.Bool("json", false, "with --receipts: print the report as JSON")
	if err := parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return failed(stderr, err)
	}
	if err := d.validate(); err != nil {
		return failed(stderr, err)
	}
	switch {
	case (*receipts == "") == (*apply == ""):
		return failed(stderr, errors.New("give either --receipts FILE.csv (compare) or --apply FILE (correct)"))
	case *fix != "" && *receipts == "":
		return failed(stderr, errors.New("--fix goes with --receipts"))
	}
	if *apply != "" {
		if _, err := os.Stat(*apply); err != nil {
			return failed(stderr, fs.bad("apply", "%v (the file --fix wrote)", err))
		}
		return reconcileApply(ctx, &d, *apply, stdout, stderr)
	}
	if *fix != "" {
		if _, err := os.Lstat(*fix); err == nil {
			return failed(stderr, fs.bad("fix", "the file exists; reconcile never overwrites a corrections file"))
		}
	}
	f, err := os.Open(*receipts)
	if err != nil {
		return failed(stderr, fs.bad("receipts", "%v", err))
	}
	lines, err := repair.ParseReceipts(f)
	f.Close()
	if err != nil {
		return failed(stderr, fmt.Errorf("%s: %w", *receipts, err))
	}
	src, closeDB, err := openRepair(ctx, &d, stderr)
	if err != nil {
		return failed(stderr, err)
	}
	defer closeDB()
	rep, err := repair.Reconcile(ctx, src, lines)
	if err != nil {
		return failed(stderr, fmt.Errorf("%s: %w", *receipts, err))
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return failed(stderr, err)
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return failed(stderr, err)
	}
	if cs := rep.Corrections(); *fix != "" {
		out := stdout
		if *asJSON {
			out = stderr // keep stdout one JSON document
		}
		if len(cs) == 0 {
			fmt.Fprintf(out, "no corrections to propose; %s not written\n", *fix)
		} else {
			if err := writeNew(*fix, cs); err != nil {
				return failed(stderr, err)
			}
			fmt.Fprintf(out, "\nwrote %d proposed corrections to %s; review it (delete the lines you do not want), then:\n  pointd reconcile --apply %s %s\n",
				len(cs), *fix, *fix, dbArgs(&d))
		}
	}
	if !rep.Clean() {
		return exitError(1)
	}
	return nil
}

func reconcileApply(ctx context.Context, d *dbFlags, file string, stdout, stderr io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return failed(stderr, err)
	}
	cs, edited, err := repair.ReadCorrections(f)
	f.Close()
	if err != nil {
		return failed(stderr, fmt.Errorf("%s: %w", file, err))
	}
	for _, l := range edited {
		fmt.Fprintf(stdout, "line %d was edited after reconcile wrote it: it is applied under the key of its new content\n", l)
	}
	db, err := d.open(ctx, true)
	if err != nil {
		return failed(stderr, fmt.Errorf("open %s: %w", d.describe(), err))
	}
	defer db.Close()
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	defer w.Close()
	st, err := repair.Apply(ctx, w, cs, func(r repair.ApplyResult) {
		fmt.Fprintf(stdout, "line %d %s: %s: ", r.Correction.Line, r.Correction.Key, r.Correction.Describe())
		switch r.Status {
		case repair.StatusFailed:
			fmt.Fprintf(stdout, "FAILED: %v\n", r.Err)
		default:
			fmt.Fprintf(stdout, "%s, transaction %s", r.Status, r.TransactionID)
			if r.Balance != nil {
				fmt.Fprintf(stdout, ", member balance %d", *r.Balance)
			}
			fmt.Fprintln(stdout)
		}
	})
	fmt.Fprintf(stdout, "%d corrections: %d applied, %d already applied, %d failed\n",
		len(cs), st.Applied, st.AlreadyApplied, st.Failed)
	if err != nil {
		return failed(stderr, err)
	}
	if st.Applied > 0 {
		fmt.Fprintf(stdout, "audit the ledger now: pointd verify %s\n", dbArgs(d))
	}
	if st.Failed > 0 {
		return exitError(1)
	}
	return nil
}

// failed reports an error of reconcile and ends it with status 2, apart
// from 1 which means findings (or corrections that failed).
func failed(stderr io.Writer, err error) error {
	fmt.Fprintf(stderr, "pointd reconcile: %v\n", err)
	return exitError(2)
}

// writeNew writes cs to a new file: an operator's edited file is never
// overwritten.
func writeNew(path string, cs []repair.Correction) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := repair.WriteCorrections(f, cs); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openRepair opens the database to read it, without migrating it (like
// verify); it says so when the indexes of time windows are not there yet.
func openRepair(ctx context.Context, d *dbFlags, stderr io.Writer) (repair.Source, func(), error) {
	db, err := d.open(ctx, false)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", d.describe(), err)
	}
	pending, err := db.PendingMigrations(ctx)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	if slices.Contains(pending, "00001_init.sql") {
		db.Close()
		return nil, nil, fmt.Errorf("%s holds no ledger (run pointd migrate first)", d.describe())
	}
	if len(pending) > 0 {
		fmt.Fprintf(stderr, "note: %s has migrations pending (%s): without them, time windows are read by a full scan; run pointd migrate\n",
			d.describe(), strings.Join(pending, ", "))
	}
	src, ok := db.(repair.Source)
	if !ok {
		db.Close()
		return nil, nil, fmt.Errorf("%s cannot list transactions by time", d.describe())
	}
	return src, func() { db.Close() }, nil
}

// dbArgs repeats the database flags for a command to suggest.
func dbArgs(d *dbFlags) string {
	if d.db != "" {
		return "--db '" + redactURL(d.db) + "'"
	}
	return "--data " + d.data
}
