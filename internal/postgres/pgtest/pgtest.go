// Package pgtest gives tests a PostgreSQL schema of their own: a fresh, empty
// schema per test on the local server, dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that points tests at a PostgreSQL
// server; DefaultDSN is used when it is unset.
const (
	EnvDSN     = "POINTD_TEST_POSTGRES"
	DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// DSN creates a fresh schema t_<random> on the test server, drops it (and
// everything in it) when t ends, and returns a DSN whose search_path is that
// schema. A test that cannot reach PostgreSQL fails: it does not skip.
//
// Close every pool opened on the DSN before the test ends (register its
// Close with t.Cleanup after calling DSN, so it runs before the drop).
func DSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		base = DefaultDSN
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("pgtest: random schema name: %v", err)
	}
	schema := "t_" + hex.EncodeToString(b[:])

	if err := exec(base, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: cannot use PostgreSQL at %s: %v\n"+
			"start PostgreSQL 15 on 127.0.0.1:5432 (trust auth, database test) or set %s; .ci/run starts it",
			redact(base), err, EnvDSN)
	}
	t.Cleanup(func() {
		if err := exec(base, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(base, schema)
}

func exec(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withSearchPath sets search_path in a URL or a keyword/value DSN.
func withSearchPath(dsn, schema string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " search_path=" + schema
}

// redact hides a password in a DSN of either form.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	return password.ReplaceAllString(dsn, "password=xxxxx")
}

var password = regexp.MustCompile(`password=('[^']*'|\S+)`)
