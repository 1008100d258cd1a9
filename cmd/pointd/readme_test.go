package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeBlock returns the body of the first ```sh block after the line
// that starts with heading in README.md.
func readmeBlock(t *testing.T, readme, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+heading)
	if !ok {
		t.Fatalf("README.md has no %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "\n```sh\n")
	if !ok {
		t.Fatalf("README.md: no sh block after %q", heading)
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("README.md: the sh block after %q does not end", heading)
	}
	return block + "\n"
}

// TestREADMETour pastes the README's tour, and the notices block after it,
// into one bash, as a new user would, in a folder of its own that looks like
// a fresh clone, on a port of its own.
func TestREADMETour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pointd and runs the tour")
	}
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the tour needs %s, which is not installed (scripts/test installs it)", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	tour := readmeBlock(t, string(readme), "## A five-minute tour")
	notices := readmeBlock(t, string(readme), "Notices and badges")

	// A clone without the files a clone does not have (bin/, pointd-data/):
	// the sources the tour builds from, linked.
	dir := t.TempDir()
	for _, name := range []string{"go.mod", "go.sum", "cmd", "internal", "vendor"} {
		if _, err := os.Stat(filepath.Join(root, name)); err != nil {
			continue
		}
		if err := os.Symlink(filepath.Join(root, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	port := strings.TrimPrefix(freeAddr(t), "127.0.0.1:")
	// The server the tour leaves running is stopped however the tour ends.
	script := "trap '[ -n \"${SERVER:-}\" ] && kill $SERVER 2>/dev/null && wait $SERVER' EXIT\n" +
		tour + notices + "echo TOUR-DONE\n"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--norc", "--noprofile", "-s")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PORT="+port)
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	log, _ := os.ReadFile(filepath.Join(dir, "pointd.log"))
	if err != nil {
		t.Fatalf("the tour failed: %v\n%s\nserver log:\n%s", err, out.String(), log)
	}
	for _, want := range []string{`"balance":375`, "ledger is sound", "TOUR-DONE"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the tour's output has no %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(strings.ToLower(out.String()), "etag:") {
		t.Errorf("the notices block showed no ETag:\n%s", out.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "pointd")); err != nil {
		t.Errorf("the tour did not leave bin/pointd for the docs' commands: %v", err)
	}
}
