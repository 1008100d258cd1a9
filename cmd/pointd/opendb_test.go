package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/postgres/pgtest"
)

func runArgs(args ...string) (int, string) {
	var out bytes.Buffer
	code := run(context.Background(), args, &out, &out)
	return code, out.String()
}

// TestModeRefusal: a database takes the mode of the command that creates
// it, and every command of the other mode, the server's first, refuses it
// with both modes in the message.
func TestModeRefusal(t *testing.T) {
	for _, c := range []struct {
		name   string
		dbArgs func(t *testing.T) []string
	}{
		{"SQLite", func(t *testing.T) []string { return []string{"--data", t.TempDir()} }},
		{"PostgreSQL", func(t *testing.T) []string { return []string{"--db", pgtest.DSN(t), "--data-key", testDataKey} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := c.dbArgs(t)
			with := func(args ...string) []string { return append(args, db...) }
			if code, out := runArgs(with("migrate", "--mode", "test")...); code != 0 {
				t.Fatalf("migrate --mode test: %d\n%s", code, out)
			}
			if code, out := runArgs(with("keys", "create", "--role", "admin", "--mode", "test")...); code != 0 {
				t.Fatalf("keys create in the database's mode: %d\n%s", code, out)
			}
			for _, args := range [][]string{
				{"serve", "--mode", "live", "--addr", "127.0.0.1:0"},
				{"keys", "create", "--role", "admin"}, // live by default
				{"verify", "--mode", "live"},
				{"migrate", "--mode", "live"},
				{"migrate", "--check", "--mode", "live"},
				{"expire", "--mode", "live"},
			} {
				code, out := runArgs(with(args...)...)
				cmd := args[0]
				if args[0] == "keys" {
					cmd = "keys create"
				}
				want := "this database was created for mode test; pointd " + cmd + " runs in mode live"
				if code == 0 || !strings.Contains(out, want) {
					t.Errorf("pointd %s: exit %d, want a refusal saying %q:\n%s", strings.Join(args, " "), code, want, out)
				}
			}
			if code, out := runArgs(with("verify", "--mode", "test")...); code != 0 || !strings.Contains(out, "ledger is sound") {
				t.Errorf("verify in the database's mode: %d\n%s", code, out)
			}
		})
	}
}

// TestNoLedgerRefusal: a command that needs a ledger refuses a folder or a
// schema without one, and makes neither the folder nor the ledger.
func TestNoLedgerRefusal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nothing-here")
	for _, args := range [][]string{
		{"keys", "create", "--role", "admin"}, {"verify"}, {"expire"},
	} {
		code, out := runArgs(append(args, "--data", dir)...)
		if code == 0 || !strings.Contains(out, "no pointd ledger in SQLite "+filepath.Join(dir, "pointd.db")) ||
			!strings.Contains(out, "`pointd serve` or `pointd migrate`") {
			t.Errorf("pointd %s on a folder that does not exist: exit %d\n%s", strings.Join(args, " "), code, out)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("pointd %s made %s: %v", strings.Join(args, " "), dir, err)
		}
	}
	// An empty folder, and an empty database file (what a crashed first
	// start might leave).
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "pointd.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{t.TempDir(), empty} {
		if code, out := runArgs("keys", "create", "--role", "admin", "--data", d); code == 0 || !strings.Contains(out, "no pointd ledger in") {
			t.Errorf("keys create in %s: exit %d\n%s", d, code, out)
		}
	}
	dsn := pgtest.DSN(t)
	if code, out := runArgs("keys", "create", "--role", "admin", "--db", dsn, "--data-key", testDataKey); code == 0 ||
		!strings.Contains(out, "no pointd ledger in PostgreSQL") {
		t.Errorf("keys create on an empty schema: exit %d\n%s", code, out)
	}
	if code, out := runArgs("migrate", "--db", dsn, "--data-key", testDataKey); code != 0 {
		t.Fatalf("migrate: %d\n%s", code, out)
	}
	if code, out := runArgs("keys", "create", "--role", "admin", "--db", dsn, "--data-key", testDataKey); code != 0 {
		t.Errorf("keys create after migrate: exit %d\n%s", code, out)
	}
}

// TestMigrationRace starts a server and `pointd migrate` at once on a fresh
// SQLite folder, 20 times, with `pointd keys create` racing both: every
// migrate succeeds, the server comes up, keys create either succeeds or
// refuses cleanly (no ledger yet), a key made after migrate always works,
// and the ledger is sound.
func TestMigrationRace(t *testing.T) {
	bin := buildPointd(t)
	for round := range 20 {
		dir := t.TempDir()
		addr := freeAddr(t)
		var serveLog bytes.Buffer
		serve := exec.Command(bin, "serve", "--data", dir, "--addr", addr)
		serve.Stdout, serve.Stderr = &serveLog, &serveLog
		if err := serve.Start(); err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- serve.Wait() }()

		var wg sync.WaitGroup
		var migrateOut, keysOut []byte
		var migrateErr, keysErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			migrateOut, migrateErr = exec.Command(bin, "migrate", "--data", dir).CombinedOutput()
		}()
		go func() {
			defer wg.Done()
			keysOut, keysErr = exec.Command(bin, "keys", "create", "--role", "admin", "--data", dir).CombinedOutput()
		}()
		wg.Wait()
		fail := func(format string, args ...any) {
			_ = serve.Process.Kill()
			<-served
			t.Fatalf("round %d: %s\nserver log:\n%s", round, fmt.Sprintf(format, args...), serveLog.String())
		}
		if migrateErr != nil {
			fail("pointd migrate: %v\n%s", migrateErr, migrateOut)
		}
		if keysErr != nil && !strings.Contains(string(keysOut), "no pointd ledger in") {
			fail("pointd keys create racing: %v\n%s", keysErr, keysOut)
		}
		if out, err := exec.Command(bin, "keys", "create", "--role", "admin", "--data", dir).CombinedOutput(); err != nil {
			fail("pointd keys create after migrate: %v\n%s", err, out)
		}
		// The server is up, or says why not.
		hc := &http.Client{Timeout: time.Second}
		for ready := false; !ready; {
			select {
			case err := <-served:
				t.Fatalf("round %d: pointd serve exited: %v\n%s", round, err, serveLog.String())
			default:
			}
			if resp, err := hc.Get("http://" + addr + "/healthz"); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
			if !ready {
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = serve.Process.Kill()
		<-served
		if out, err := exec.Command(bin, "verify", "--data", dir).CombinedOutput(); err != nil || !strings.Contains(string(out), "ledger is sound") {
			t.Fatalf("round %d: verify: %v\n%s", round, err, out)
		}
	}
}
