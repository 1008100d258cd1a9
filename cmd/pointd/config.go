package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/phone"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/privacy"
	"github.com/pointd/pointd/internal/sqlite"
	"github.com/pointd/pointd/internal/suggest"
)

// flagSet is a command's flags. It remembers which values came from the
// environment, so that a refusal names the variable the operator set and
// not a flag they never typed.
type flagSet struct {
	*flag.FlagSet
	out     io.Writer
	fromEnv map[string]string // flag name → POINTD_* variable, while the command line has not set it
	envSet  bool              // Set calls come from the environment
	refused *flagError        // what the last failed Set refused
}

// newFlags makes a flag set whose defaults come from POINTD_* variables, so
// every flag is also configurable from the environment.
func newFlags(name string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("pointd "+name, flag.ContinueOnError), out: stderr, fromEnv: map[string]string{}}
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage of pointd %s:\n", name)
		fs.printDefaults()
	}
	if flagSetHook != nil {
		flagSetHook(name, fs)
	}
	return fs
}

// flagSetHook lets the tests see every command's flags.
var flagSetHook func(command string, fs *flagSet)

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

// secretFlags are never repeated in a message; urlFlags lose their password.
var (
	secretFlags = map[string]bool{"data-key": true, "admin-key": true, "otp-webhook-secret": true}
	urlFlags    = map[string]bool{"db": true, "redis": true, "otp-webhook": true, "target": true}
)

// flagError is a refused flag value: the flag (and the variable it came
// from), the value, and what would have been accepted.
type flagError struct {
	Flag, Value, Env, Want string
}

func (e *flagError) Error() string {
	v := e.Value
	switch {
	case secretFlags[e.Flag]:
		v = "(hidden)"
	case urlFlags[e.Flag]:
		v = redactURL(v)
	}
	if v == "" || strings.ContainsAny(v, " \t\"'") {
		v = fmt.Sprintf("%q", v)
	}
	if e.Env != "" {
		return fmt.Sprintf("%s=%s (--%s): %s", e.Env, v, e.Flag, e.Want)
	}
	return fmt.Sprintf("--%s %s: %s", e.Flag, v, e.Want)
}

// bad refuses the current value of flag name: want says what is accepted.
func (fs *flagSet) bad(name, want string, args ...any) error {
	e := &flagError{Flag: name, Want: fmt.Sprintf(want, args...)}
	if fs == nil {
		return e
	}
	e.Env = fs.fromEnv[name]
	if f := fs.Lookup(name); f != nil {
		e.Value = f.Value.String()
	}
	return e
}

// checkedValue notes why a value is refused, in words an operator can act on.
type checkedValue struct {
	flag.Value
	fs   *flagSet
	name string
}

func (c *checkedValue) String() string {
	if c == nil || c.Value == nil { // the flag package's zero-value probe
		return ""
	}
	return c.Value.String()
}

func (c *checkedValue) IsBoolFlag() bool {
	b, ok := c.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (c *checkedValue) Set(s string) error {
	if err := c.Value.Set(s); err != nil {
		c.fs.refused = &flagError{Flag: c.name, Value: s, Want: accepted(c.Value, s, err)}
		return err
	}
	if !c.fs.envSet {
		delete(c.fs.fromEnv, c.name)
	}
	return nil
}

// accepted says what a flag of v's type takes.
func accepted(v flag.Value, s string, err error) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return err.Error()
	}
	switch g.Get().(type) {
	case bool:
		return "must be true or false"
	case int, int64:
		return "must be a whole number"
	case uint, uint64:
		return "must be a whole number, 0 or more"
	case float64:
		return "must be a number, e.g. 100 or 2.5"
	case time.Duration:
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Sprintf("a duration needs a unit: %ss, %sms or %sm", s, s, s)
		}
		return "must be a duration with a unit, e.g. 10s, 500ms or 2m"
	}
	return err.Error()
}

func (fs *flagSet) wrap() {
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*checkedValue); !ok {
			f.Value = &checkedValue{Value: f.Value, fs: fs, name: f.Name}
		}
	})
}

// printDefaults prints the flags with their own types (the flag package
// names a flag's type from its Value).
func (fs *flagSet) printDefaults() {
	fs.VisitAll(func(f *flag.Flag) {
		if c, ok := f.Value.(*checkedValue); ok {
			f.Value = c.Value
		}
	})
	fs.PrintDefaults()
	fs.wrap()
}

// parse applies the environment, then the command line; a bad value in
// either stops the program with a message that names it.
func parse(fs *flagSet, args []string) error {
	if err := fs.parseEnv(); err != nil {
		return err
	}
	if err := fs.parseArgs(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags are --name value; pointd %s --help lists them)", fs.Arg(0), strings.TrimPrefix(fs.Name(), "pointd "))
	}
	return nil
}

func (fs *flagSet) parseEnv() error {
	fs.wrap()
	fs.envSet = true
	defer func() { fs.envSet = false }()
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if commandOnly[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			fs.refused = nil
			if e := fs.Set(f.Name, v); e != nil {
				if fs.refused != nil {
					fs.refused.Env = envName(f.Name)
					err = fs.refused
				} else {
					err = fmt.Errorf("%s=%q: %v", envName(f.Name), v, e)
				}
				return
			}
			fs.fromEnv[f.Name] = envName(f.Name)
		}
	})
	return err
}

// parseArgs parses the command line. The flag package's own message and the
// whole flag list it prints on a mistake are held back: the error says what
// was wrong, and --help prints the list.
func (fs *flagSet) parseArgs(args []string) error {
	fs.wrap()
	var held bytes.Buffer
	fs.SetOutput(&held)
	fs.refused = nil
	err := fs.Parse(args)
	fs.SetOutput(fs.out)
	cmd := strings.TrimPrefix(fs.Name(), "pointd ")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.Copy(fs.out, &held)
		return err
	case fs.refused != nil:
		return fs.refused
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		name = strings.TrimLeft(name, "-")
		var known []string
		fs.VisitAll(func(f *flag.Flag) { known = append(known, f.Name) })
		if near := suggest.Nearest(name, known); near != "" {
			return fmt.Errorf("unknown flag --%s: did you mean --%s? (pointd %s --help lists every flag)", name, near, cmd)
		}
		return fmt.Errorf("unknown flag --%s (pointd %s --help lists every flag)", name, cmd)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		name = strings.TrimLeft(name, "-")
		return fmt.Errorf("--%s needs a value: --%s VALUE (pointd %s --help says what it takes)", name, name, cmd)
	}
	return err
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
	fs      *flagSet
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

func (d *dbFlags) register(fs *flagSet) {
	d.fs = fs
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
			return nil, d.fs.bad("data-key", "%v (make one with: openssl rand -base64 32)", err)
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
		return d.fs.bad("db", "must be a postgres:// URL, e.g. postgres://user@host:5432/db (empty: SQLite in --data)")
	}
	if d.conns < 2 || d.conns > 64 {
		return d.fs.bad("db-conns", "must be from 2 to 64")
	}
	if d.dataKey != "" {
		if _, err := privacy.ParseKey(d.dataKey); err != nil {
			return d.fs.bad("data-key", "%v", err)
		}
	}
	if d.db == "" {
		if d.data == "" {
			return d.fs.bad("data", "must name a folder (it is made if missing), or give --db")
		}
		if st, err := os.Stat(d.data); err == nil && !st.IsDir() {
			return d.fs.bad("data", "must be a folder, and this is a file")
		}
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
