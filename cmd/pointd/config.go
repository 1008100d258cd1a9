package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/phone"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/privacy"
	"github.com/pointd/pointd/internal/sqlite"
)

// newFlags makes a flag set whose defaults come from POINTD_* variables, so
// every flag is also configurable from the environment.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pointd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func envName(flagName string) string {
	return "POINTD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// commandOnly flags say what a command should do this time, not how pointd
// is configured: a stray POINTD_APPLY or POINTD_TEST_DROP_EVERY left in an
// environment must never change what a command does.
var commandOnly = map[string]bool{
	"apply": true, "fix": true, "receipts": true, "check": true, "json": true, "from": true, "to": true,
	"store": true, "role": true, "merchant": true, "name": true, "test-drop-every": true, "cleanup": true,
	"into": true, "reason": true,
}

// parse applies the environment, then the command line; a bad value in
// either stops the program with a message that names it.
func parse(fs *flag.FlagSet, args []string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if commandOnly[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %v", envName(f.Name), v, e)
			}
		}
	})
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// dbFlags are the flags that choose the database.
type dbFlags struct {
	data    string
	db      string
	conns   int
	dataKey string          // --data-key: base64 of 32 bytes
	phones  *privacy.Phones // set by open when a data key is known
	numbers phoneRegion     // --phone-region
	// rekeyed is what re-keying phone numbers to E.164 did when open (or
	// usePhones) did it now; nil when it had been done before.
	rekeyed *member.PhoneRekey
}

// phoneRegion is the --phone-region flag: the region whose national
// numbers ("010-1234-5678") pointd reads without a country code.
type phoneRegion struct{ plan phone.Plan }

func (r *phoneRegion) String() string { return r.plan.Region() }

func (r *phoneRegion) Set(v string) error {
	p, err := phone.NewPlan(v)
	if err != nil {
		return err
	}
	r.plan = p
	return nil
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.data, "data", "pointd-data", "folder of the embedded SQLite database (used unless --db is set)")
	fs.StringVar(&d.db, "db", "", "PostgreSQL URL, e.g. postgres://user@host:5432/db; empty: SQLite in --data")
	fs.IntVar(&d.conns, "db-conns", 8, "PostgreSQL connections (fixed, whatever the load)")
	fs.StringVar(&d.dataKey, "data-key", "", "key that seals members' phone numbers at rest: base64 of 32 bytes (openssl rand -base64 32); "+
		"empty: on SQLite, --data/"+privacy.KeyFileName+" (made on first start); on PostgreSQL, required by serve")
	fs.Var(&d.numbers, "phone-region", "region whose national phone numbers are read without a country code: "+
		"an ISO 3166-1 two-letter code such as KR, JP or US (numbers with + and a country code are read as written)")
}

// dataKeyPhones resolves the data key: the flag, else on SQLite the key
// file in the data folder (made on first start). On PostgreSQL without the
// flag it returns nil: several instances must share one key, so none can be
// made up here.
func (d *dbFlags) dataKeyPhones() (*privacy.Phones, error) {
	var key []byte
	switch {
	case d.dataKey != "":
		k, err := privacy.ParseKey(d.dataKey)
		if err != nil {
			return nil, fmt.Errorf("--data-key: %w", err)
		}
		key = k
	case d.db == "":
		k, _, err := privacy.LoadOrCreateKeyFile(d.data)
		if err != nil {
			return nil, fmt.Errorf("data key file in %s: %w", d.data, err)
		}
		key = k
	default:
		return nil, nil
	}
	return privacy.New(key)
}

func (d *dbFlags) validate() error {
	if d.db != "" && !strings.HasPrefix(d.db, "postgres://") && !strings.HasPrefix(d.db, "postgresql://") {
		return fmt.Errorf("--db must be a postgres:// URL, got %q", d.db)
	}
	if d.conns < 2 || d.conns > 64 {
		return fmt.Errorf("--db-conns must be from 2 to 64, got %d", d.conns)
	}
	return nil
}

func (d *dbFlags) describe() string {
	if d.db != "" {
		return "PostgreSQL " + redactURL(d.db)
	}
	abs, _ := filepath.Abs(filepath.Join(d.data, "pointd.db"))
	return "SQLite " + abs
}

// database is what the commands need of a store.
type database interface {
	ledger.Store
	auth.KeyStore
	member.Store
	Migrate(ctx context.Context) ([]string, error)
	PendingMigrations(ctx context.Context) ([]string, error)
	// UsePhones sets the data key for phone numbers (internal/privacy).
	UsePhones(ctx context.Context, p *privacy.Phones) error
	member.PhoneRekeyer
}

// poolStats reads the connection figures of either store.
func poolStats(db database) (inUse, max int) {
	switch d := db.(type) {
	case *sqlite.DB:
		w, r, m := d.Stats()
		return w + r, m
	case *postgres.DB:
		u, _, m := d.Stats()
		return u, m
	}
	return 0, 0
}

// open opens the chosen database; migrate says whether to apply pending
// migrations first.
func (d *dbFlags) open(ctx context.Context, migrate bool) (database, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	phones, err := d.dataKeyPhones()
	if err != nil {
		return nil, err
	}
	db, err := d.connect(ctx, migrate)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.describe(), err)
	}
	if phones != nil {
		d.phones = phones
		if err := d.usePhones(ctx, db); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// usePhones gives the store the data key and brings the numbers it holds to
// today's form: it seals what an older schema left in clear and re-keys
// numbers stored before E.164. Without every migration applied (pointd
// migrate --check) the columns may not exist, so it waits for them.
func (d *dbFlags) usePhones(ctx context.Context, db database) error {
	pending, err := db.PendingMigrations(ctx)
	if err != nil || len(pending) > 0 {
		return err
	}
	if err := db.UsePhones(ctx, d.phones); err != nil {
		return fmt.Errorf("data key: %w", err)
	}
	rep, err := db.NormalizePhones(ctx, d.numbers.plan.Normalize)
	if err != nil {
		return err
	}
	if !rep.AlreadyDone {
		d.rekeyed = &rep
	}
	return nil
}

// reportRekey says what re-keying phone numbers did, when it ran now.
func (d *dbFlags) reportRekey(w io.Writer) {
	r := d.rekeyed
	if r == nil {
		return
	}
	fmt.Fprintf(w, "phone numbers: %d read, %d rewritten in E.164 (region %s)", r.Read, r.Changed, d.numbers.plan.Region())
	if len(r.Unparsed) > 0 {
		fmt.Fprintf(w, ", %d kept as they were (not a valid number)", len(r.Unparsed))
	}
	if len(r.Duplicates) > 0 {
		fmt.Fprintf(w, "; %d member(s) share a number with an older member: list them with pointd members duplicates", len(r.Duplicates))
	}
	fmt.Fprintln(w)
}

func (d *dbFlags) connect(ctx context.Context, migrate bool) (database, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if d.db != "" {
		if migrate {
			return postgres.Open(ctx, d.db, d.conns)
		}
		return postgres.OpenNoMigrate(ctx, d.db, d.conns)
	}
	if migrate {
		return sqlite.Open(ctx, d.data)
	}
	return sqlite.OpenNoMigrate(ctx, d.data)
}

// redactURL hides a password in a database URL before it is printed.
func redactURL(u string) string {
	at := strings.LastIndex(u, "@")
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 {
		return u
	}
	userinfo := u[scheme+3 : at]
	if name, _, ok := strings.Cut(userinfo, ":"); ok {
		return u[:scheme+3] + name + ":***" + u[at:]
	}
	return u
}
