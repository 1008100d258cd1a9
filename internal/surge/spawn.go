package surge

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// server is a pointd serve process surge started itself.
type server struct {
	bin    string
	args   []string // serve arguments without --addr
	dbArgs []string // --data DIR or --db URL, for keys create and verify
	mode   string   // the serve arguments' --mode: the tools must run in it too
	addr   string
	logDir string
	starts int

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func newServer(bin string, serveArgs []string, logDir string) (*server, error) {
	s := &server{bin: bin, logDir: logDir}
	var rest []string
	for i := 0; i < len(serveArgs); i++ {
		a := serveArgs[i]
		switch {
		case a == "--addr" || a == "-addr":
			if i+1 < len(serveArgs) {
				s.addr = serveArgs[i+1]
				i++
			}
			continue
		case strings.HasPrefix(a, "--addr=") || strings.HasPrefix(a, "-addr="):
			_, s.addr, _ = strings.Cut(a, "=")
			continue
		}
		rest = append(rest, a)
	}
	s.args = rest
	s.mode = flagValue(rest, "mode")
	if db := flagValue(rest, "db"); db != "" {
		s.dbArgs = []string{"--db", db}
	} else if d := flagValue(rest, "data"); d != "" {
		s.dbArgs = []string{"--data", d}
	} else {
		return nil, fmt.Errorf("--spawn needs --data DIR or --db URL among the serve arguments, so that surge can audit the data afterwards")
	}
	if s.addr == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		s.addr = ln.Addr().String()
		ln.Close()
	}
	return s, nil
}

func (s *server) url() string { return "http://" + s.addr }

// setDB replaces the database URL the server is started with (the db-slow
// proxy); keys and verify keep going to the database directly.
func (s *server) setDB(url string) {
	for i, a := range s.args {
		if (a == "--db" || a == "-db") && i+1 < len(s.args) {
			s.args[i+1] = url
		} else if strings.HasPrefix(a, "--db=") || strings.HasPrefix(a, "-db=") {
			s.args[i] = "--db=" + url
		}
	}
}

func (s *server) tool(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, args...), s.dbArgs...)
	if s.mode != "" {
		full = append(full, "--mode", s.mode)
	}
	out, err := exec.CommandContext(ctx, s.bin, full...).CombinedOutput()
	return string(out), err
}

// adminKey creates an admin key on the server's database, creating the
// database first when there is none (keys create refuses to make one).
func (s *server) adminKey(ctx context.Context) (string, error) {
	if out, err := s.tool(ctx, "migrate"); err != nil {
		return "", fmt.Errorf("pointd migrate: %v\n%s", err, out)
	}
	out, err := s.tool(ctx, "keys", "create", "--role", "admin", "--name", "surge")
	if err != nil {
		return "", fmt.Errorf("pointd keys create: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	key := strings.TrimSpace(lines[len(lines)-1])
	if !strings.HasPrefix(key, "pd_") {
		return "", fmt.Errorf("pointd keys create printed no key:\n%s", out)
	}
	return key, nil
}

// start runs the server and waits until /readyz answers 200.
func (s *server) start(ctx context.Context) error {
	s.starts++
	logPath := filepath.Join(s.logDir, fmt.Sprintf("serve-%d.log", s.starts))
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--addr", s.addr}, s.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start pointd serve: %w", err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.err = err
		close(done)
	}()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(s.url() + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("pointd serve exited while starting (%v); log: %s", s.err, logPath)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pointd serve not ready after 60s; log: %s", logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to end.
func (s *server) kill() {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop sends SIGTERM (the server drains) and waits; SIGKILL after 40 s.
func (s *server) stop() error {
	if !s.running() {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return s.err
	case <-time.After(40 * time.Second):
		s.kill()
		return fmt.Errorf("pointd serve did not stop within 40s of SIGTERM; killed")
	}
}

// verify runs `pointd verify` on the server's data.
func (s *server) verify(ctx context.Context) (string, error) {
	return s.tool(ctx, "verify")
}
