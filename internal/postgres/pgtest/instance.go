//go:build linux

package pgtest

import (
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// EnvBin names the environment variable with the folder of PostgreSQL's
// server programs (initdb, pg_ctl); without it the newest version under
// /usr/lib/postgresql is used.
const EnvBin = "POINTD_TEST_PG_BIN"

// Instance is a PostgreSQL server of one test's own, in a folder of the
// test on a free port, that the test may stop hard and start again, or
// freeze and resume, as an outage would: never the machine's own server,
// which other tests share.
type Instance struct {
	t      testing.TB
	bin    string
	dir    string // the socket, the log and the data folder
	port   int
	cred   *syscall.Credential // the postgres user's, when the test runs as root (initdb refuses root)
	frozen []int
}

// NewInstance creates a database cluster in t.TempDir() and starts it. It
// stops the server when t ends. A machine without PostgreSQL's server
// programs fails the test: it does not skip.
func NewInstance(t testing.TB) *Instance {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		if len(found) == 0 {
			t.Fatalf("pgtest: no PostgreSQL server programs under /usr/lib/postgresql; install postgresql or set %s", EnvBin)
		}
		bin = filepath.Dir(found[len(found)-1])
	}
	in := &Instance{t: t, bin: bin, dir: t.TempDir()}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root, initdb needs another user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		in.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The test's folders are private to root; the server's user must
		// reach its own.
		for _, d := range []string{filepath.Dir(in.dir), in.dir} {
			if err := os.Chmod(d, 0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	in.run("initdb", "-D", in.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--no-instructions")
	in.Start()
	t.Cleanup(func() {
		in.Thaw()
		_ = in.exec("pg_ctl", "-D", in.data(), "-m", "immediate", "-w", "stop")
	})
	return in
}

func (in *Instance) data() string { return filepath.Join(in.dir, "data") }

// DSN is the URL of the server's postgres database.
func (in *Instance) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", in.port)
}

// Start starts the server (again) and waits until it accepts connections.
func (in *Instance) Start() {
	in.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", in.port, in.dir)
	in.run("pg_ctl", "-D", in.data(), "-l", filepath.Join(in.dir, "log"), "-w", "-t", "120", "-o", opts, "start")
}

// StopHard stops the server at once, as a crash would: every connection
// is cut, nothing is shut down cleanly (the next Start recovers).
func (in *Instance) StopHard() {
	in.t.Helper()
	in.run("pg_ctl", "-D", in.data(), "-m", "immediate", "-w", "stop")
}

// Freeze stops every process of the server (SIGSTOP): connections stay
// open and nothing answers, as with a hung machine, until Thaw.
func (in *Instance) Freeze() {
	in.t.Helper()
	b, err := os.ReadFile(filepath.Join(in.data(), "postmaster.pid"))
	if err != nil {
		in.t.Fatalf("pgtest: the server is not running: %v", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		in.t.Fatalf("pgtest: postmaster.pid: %v", err)
	}
	pids := append([]int{pm}, children(pm)...)
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			in.t.Fatalf("pgtest: SIGSTOP %d: %v", p, err)
		}
		in.frozen = append(in.frozen, p)
	}
}

// Thaw resumes what Freeze stopped (SIGCONT).
func (in *Instance) Thaw() {
	for _, p := range in.frozen {
		_ = syscall.Kill(p, syscall.SIGCONT)
	}
	in.frozen = nil
}

// children lists the processes whose parent is pid (/proc).
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

func (in *Instance) run(prog string, args ...string) {
	in.t.Helper()
	if err := in.exec(prog, args...); err != nil {
		in.t.Fatal(err)
	}
}

func (in *Instance) exec(prog string, args ...string) error {
	cmd := osexec.Command(filepath.Join(in.bin, prog), args...)
	cmd.Dir = in.dir
	if in.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(in.dir, "log"))
		return fmt.Errorf("pgtest: %s %s: %v\n%s\nserver log:\n%s", prog, strings.Join(args, " "), err, out, log)
	}
	return nil
}
