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
	command string // the command's name, for messages
	data    string
	db      string
	conns   int
	dataKey string          // --data-key: base64 of 32 bytes
	mode    string          // --mode: live or test, checked against the database's own
	phones  *privacy.Phones // set by open when a data key is known
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	d.command = strings.TrimPrefix(fs.Name(), "pointd ")
	fs.StringVar(&d.data, "data", "pointd-data", "folder of the embedded SQLite database (used unless --db is set)")
	fs.StringVar(&d.db, "db", "", "PostgreSQL URL, e.g. postgres://user@host:5432/db; empty: SQLite in --data")
	fs.IntVar(&d.conns, "db-conns", 8, "PostgreSQL connections (fixed, whatever the load)")
	fs.StringVar(&d.dataKey, "data-key", "", "key that seals members' phone numbers at rest: base64 of 32 bytes (openssl rand -base64 32); "+
		"empty: on SQLite, --data/"+privacy.KeyFileName+" (made on first start); on PostgreSQL, required by serve")
	fs.StringVar(&d.mode, "mode", "live", "live or test: the database records the mode it was created in, "+
		"and a server or command of the other mode refuses to open it")
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
	if m := auth.Mode(d.mode); m != auth.ModeLive && m != auth.ModeTest {
		return fmt.Errorf("--mode must be live or test, got %q", d.mode)
	}
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
	// HasLedger reports whether the database holds a pointd ledger at all.
	HasLedger(ctx context.Context) (bool, error)
	// Mode is the mode recorded in the database ("" if none yet); ClaimMode
	// records one unless there is one already and returns the recorded mode.
	Mode(ctx context.Context) (string, error)
	ClaimMode(ctx context.Context, mode string) (string, error)
	// UsePhones sets the data key for phone numbers (internal/privacy).
	UsePhones(ctx context.Context, p *privacy.Phones) error
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

// How a command opens the database.
type openHow int

const (
	// useExisting refuses a folder or schema that holds no pointd ledger,
	// creating nothing; pending migrations of an existing ledger are applied.
	useExisting openHow = iota
	// readExisting is useExisting without applying migrations (pointd verify).
	readExisting
	// create makes the ledger when there is none and applies every pending
	// migration (pointd serve).
	create
	// asIs opens or creates the database and changes no schema (pointd
	// migrate, which migrates or only reports by itself).
	asIs
)

// open opens the chosen database and refuses one recorded in the other
// mode; a command that migrates records --mode in a database that has none
// yet.
func (d *dbFlags) open(ctx context.Context, how openHow) (database, error) {
	if err := d.validate(); err != nil {
		return nil, err
	}
	existing := how == useExisting || how == readExisting
	if existing && d.db == "" {
		// Before anything is made: not the folder, not the key file.
		ok, err := sqlite.Exists(d.data)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", d.describe(), err)
		}
		if !ok {
			return nil, d.noLedger()
		}
	}
	phones, err := d.dataKeyPhones()
	if err != nil {
		return nil, err
	}
	db, err := d.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d.describe(), err)
	}
	if err := d.prepare(ctx, db, how, phones); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (d *dbFlags) prepare(ctx context.Context, db database, how openHow, phones *privacy.Phones) error {
	if how == useExisting || how == readExisting {
		ok, err := db.HasLedger(ctx)
		if err != nil {
			return fmt.Errorf("open %s: %w", d.describe(), err)
		}
		if !ok {
			return d.noLedger()
		}
	}
	// The other mode's database is refused before anything in it changes,
	// its schema included.
	if err := d.checkMode(ctx, db, false); err != nil {
		return err
	}
	migrates := how == useExisting || how == create
	if migrates {
		if _, err := db.Migrate(ctx); err != nil {
			return fmt.Errorf("open %s: %w", d.describe(), err)
		}
	}
	// Without every migration applied (pointd migrate --check, verify of an
	// older schema) the columns and the mode record may not exist yet.
	pending, err := db.PendingMigrations(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.describe(), err)
	}
	if migrates && len(pending) == 0 {
		if err := d.checkMode(ctx, db, true); err != nil {
			return err
		}
	}
	// With the key, seal what an older schema left in clear.
	if phones != nil {
		if len(pending) == 0 {
			if err := db.UsePhones(ctx, phones); err != nil {
				return fmt.Errorf("data key: %w", err)
			}
		}
		d.phones = phones
	}
	return nil
}

// checkMode refuses a database recorded in the other mode; claim records
// --mode in a database that has no mode yet (a new one, or one made before
// databases recorded their mode).
func (d *dbFlags) checkMode(ctx context.Context, db database, claim bool) error {
	recorded, err := db.Mode(ctx)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.describe(), err)
	}
	if recorded == "" && claim {
		if recorded, err = db.ClaimMode(ctx, d.mode); err != nil {
			return fmt.Errorf("open %s: %w", d.describe(), err)
		}
	}
	if recorded != "" && recorded != d.mode {
		return fmt.Errorf("this database was created for mode %s; pointd %s runs in mode %s: %s opens only with --mode %s "+
			"(a test server must never see live members, nor a live one test data); "+
			"run with --mode %s, or give a database of mode %s with %s",
			recorded, d.command, d.mode, d.describe(), recorded, recorded, d.mode, d.where())
	}
	return nil
}

// where is the flag that names the database.
func (d *dbFlags) where() string {
	if d.db != "" {
		return "--db"
	}
	return "--data"
}

// noLedger is the refusal of a command that needs a ledger where there is none.
func (d *dbFlags) noLedger() error {
	given := "--data " + d.data
	if d.db != "" {
		given = "--db " + redactURL(d.db)
	}
	return fmt.Errorf("no pointd ledger in %s (%s): run `pointd serve` or `pointd migrate` on it first, which create one; "+
		"pointd %s created nothing", d.describe(), given, d.command)
}

func (d *dbFlags) connect(ctx context.Context) (database, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if d.db != "" {
		return postgres.OpenNoMigrate(ctx, d.db, d.conns)
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
