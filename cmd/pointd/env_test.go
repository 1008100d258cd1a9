package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/cache/redistest"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// harnessEnv are the POINTD_* variables that configure the tests themselves
// (where their PostgreSQL and Redis are), not pointd.
var harnessEnv = map[string]bool{pgtest.EnvDSN: true, redistest.EnvURL: true}

// clearPointdEnv unsets every POINTD_* variable but the harness's own, so
// that no test reads the caller's configuration: every flag of every
// command falls back to a POINTD_* variable, and a shell set up as the
// README says (export POINTD_DATA_KEY=…) would otherwise change what the
// tests run, in process and in every pointd they start. A test that means
// a variable sets it with t.Setenv, which puts it back afterwards.
func clearPointdEnv() error {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "POINTD_") && !harnessEnv[name] {
			if err := os.Unsetenv(name); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	if err := clearPointdEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "clearing POINTD_* variables:", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
