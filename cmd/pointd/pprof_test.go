package main

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// TestPprofCmdlineHidesSecrets starts pointd with a password in its --db URL
// and a data key on its command line: /debug/pprof/cmdline, which shows the
// command line to an admin key, shows neither.
func TestPprofCmdlineHidesSecrets(t *testing.T) {
	bin := buildPointd(t)
	u, err := url.Parse(pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts local connections, so the password is carried
	// and never checked: it only has to appear on the command line.
	u.User = url.UserPassword(u.User.Username(), "hunter2-in-url")
	s := newServerProc(t, bin, []string{"--db", u.String(), "--data-key", testDataKey})
	s.start()
	defer s.stop()
	admin := s.adminKey()

	req, _ := http.NewRequest("GET", "http://"+s.addr+"/debug/pprof/cmdline", nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	got := strings.ReplaceAll(string(b), "\x00", " ")
	if resp.StatusCode != http.StatusOK || !strings.Contains(got, "serve") || !strings.Contains(got, "--db") {
		t.Fatalf("/debug/pprof/cmdline: %d %q", resp.StatusCode, got)
	}
	for _, secret := range []string{"hunter2-in-url", testDataKey} {
		if strings.Contains(got, secret) {
			t.Errorf("/debug/pprof/cmdline shows a secret: %q", got)
		}
	}
	if !strings.Contains(got, u.User.Username()+":***@") {
		t.Errorf("/debug/pprof/cmdline lost the rest of the URL: %q", got)
	}
}
