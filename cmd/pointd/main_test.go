package main

import (
	"os"
	"strings"
	"testing"
)

// TestMain runs the tests without the caller's pointd configuration: the
// README has a PostgreSQL user export POINTD_DATA_KEY, and a test that means
// "without a data key" (or in live mode, or on SQLite) must not inherit one,
// neither in run() nor in the pointd processes the tests start, which
// inherit this process's environment. What a test needs it sets itself with
// t.Setenv or flags. POINTD_TEST_* say where the test services are and stay.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "POINTD_") && !strings.HasPrefix(name, "POINTD_TEST_") {
			os.Unsetenv(name)
		}
	}
	os.Exit(m.Run())
}
