package main

// Surge tests: the real binary runs `pointd surge` against a server it
// spawns itself, kills it in the middle (SIGKILL, restart on the same data)
// and must still end with a clean verdict; with a planted bug that loses
// every 100th ledger write, the verdict must catch it.

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// runSurge runs `pointd surge` in this process (so that -race watches the
// surge code) with the built binary as the server it spawns, and returns
// its exit status, stdout and stderr.
func runSurge(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := run(t.Context(), append([]string{"surge", "--server-binary", bin, "--spawn-logs", t.TempDir()}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// syncBuffer is a bytes.Buffer that several goroutines may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastOutputLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

var shortSurge = []string{"--duration", "4s", "--rate", "80", "--members", "30", "--stores", "6", "--seed", "7"}

func surgeClean(t *testing.T, spawn string, extra ...string) (stderr string) {
	bin := buildPointd(t)
	args := append(append([]string{"--spawn", spawn, "--fault", "server-kill@2s", "--fault", "conn-drop@1s:1s"}, shortSurge...), extra...)
	code, out, errOut := runSurge(t, bin, args...)
	t.Logf("stdout:\n%s", out)
	if code != 0 || lastOutputLine(out) != "verdict: clean" {
		t.Fatalf("exit status %d, last line %q; want 0 and \"verdict: clean\"\nstderr:\n%s", code, lastOutputLine(out), errOut)
	}
	if !strings.Contains(out, "spawned server: started 2 times") {
		t.Errorf("the server was not killed and restarted:\n%s", out)
	}
	if !strings.Contains(out, "pointd verify: ledger is sound") {
		t.Errorf("no sound audit in the report:\n%s", out)
	}
	return errOut
}

// On SQLite with the badge profile: a notice is published mid-run and the
// app's badge polls and notice reads rush while the server is killed.
func TestSurgeServerKillSQLite(t *testing.T) {
	if errOut := surgeClean(t, "--data "+t.TempDir(), "--profile", "badge"); !strings.Contains(errOut, "notice 0 published") {
		t.Errorf("no notice was published for the badge rush:\n%s", errOut)
	}
}

// TestSurgeServerKillPostgreSQL fails (does not skip) without PostgreSQL.
func TestSurgeServerKillPostgreSQL(t *testing.T) {
	surgeClean(t, "--db "+pgtest.DSN(t)+" --data-key "+testDataKey)
}

func TestSurgeCatchesDroppedWrites(t *testing.T) {
	bin := buildPointd(t)
	code, out, errOut := runSurge(t, bin, append([]string{"--spawn", "--data " + t.TempDir() + " --test-drop-every 100"}, shortSurge...)...)
	t.Logf("stdout:\n%s", out)
	last := lastOutputLine(out)
	if code == 0 || !regexp.MustCompile(`^verdict: [1-9][0-9]* discrepancies$`).MatchString(last) {
		t.Fatalf("exit status %d, last line %q; want non-zero and \"verdict: N discrepancies\"\nstderr:\n%s", code, last, errOut)
	}
	if !strings.Contains(out, "DISCREPANCY missing:") {
		t.Errorf("surge's own check did not find the lost transactions (only the audit did?):\n%s", out)
	}
}

func TestSurgeRefusesBadFlags(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{
		{"surge", "--admin-key", "k"},
		{"surge", "--target", "http://127.0.0.1:1", "--admin-key", "k", "--fault", "server-kill@1s"},
		{"surge", "--target", "http://127.0.0.1:1", "--admin-key", "k", "--fault", "bogus@1s"},
		{"surge", "--spawn-data", "x", "--fault", "db-slow@1s:1s"},
	} {
		if code := run(t.Context(), args, &out, &errb); code == 0 {
			t.Errorf("%v: exit 0, want a refusal", args)
		}
	}
}

// A run's synthetic data (3 POS keys and the app key among it) is retired with one command, and a second run of
// that command finds nothing left to do.
func TestSurgeCleanup(t *testing.T) {
	bin := buildPointd(t)
	srv := newServerProc(t, bin, []string{"--data", t.TempDir()})
	srv.start()
	admin := srv.adminKey()
	target := "http://" + srv.addr
	code, out, errOut := runSurge(t, bin, "--target", target, "--admin-key", admin,
		"--duration", "2s", "--rate", "40", "--members", "12", "--stores", "3")
	if code != 0 {
		t.Fatalf("surge: exit %d\n%s\n%s", code, out, errOut)
	}
	m := regexp.MustCompile(`names start with "surge-([0-9a-f]+)"`).FindStringSubmatch(out + errOut)
	if m == nil {
		t.Fatalf("no run id in the output:\n%s", out)
	}
	cleanup := func() string {
		t.Helper()
		code, out, errOut := runPointd(t, "surge", "--target", target, "--admin-key", admin, "--cleanup", m[1])
		if code != 0 {
			t.Fatalf("surge --cleanup: exit %d\n%s\n%s", code, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	want := "surge run " + m[1] + ": revoked 4 keys, suspended 3 stores, 2 merchants and 12 members"
	if got := cleanup(); got != want {
		t.Errorf("first cleanup: %q, want %q", got, want)
	}
	want = "surge run " + m[1] + ": revoked 0 keys, suspended 0 stores, 0 merchants and 0 members"
	if got := cleanup(); got != want {
		t.Errorf("second cleanup: %q, want %q", got, want)
	}
	if code, _, errOut := runPointd(t, "surge", "--target", target, "--admin-key", admin, "--cleanup", "not-a-run"); code == 0 ||
		!strings.Contains(errOut, "not a surge run id") {
		t.Errorf("a bad run id: exit %d, %s", code, errOut)
	}
}
