package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
)

// commandArgs are the commands with the arguments that get each one past
// its own checks to the point where a flag's value is looked at; the bad
// flag comes after them, so it is the value that counts.
func commandArgs(t *testing.T) map[string][]string {
	dir := t.TempDir()
	// A folder with a ledger, so that what is refused is the flag's value,
	// not the folder (commands other than serve and migrate want a ledger).
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"migrate", "--data", dir}, &out, &errb); code != 0 {
		t.Fatalf("pointd migrate: exit %d: %s", code, errb.String())
	}
	return map[string][]string{
		"serve":              {"--addr", "127.0.0.1:0", "--data", dir},
		"keys create":        {"--data", dir},
		"migrate":            {"--data", dir},
		"verify":             {"--data", dir},
		"expire":             {"--data", dir},
		"members merge":      {"--data", dir, "B"},
		"members duplicates": {"--data", dir},
		"incident":           {"--data", dir, "--from", "2026-01-01", "--to", "2026-01-02"},
		"reconcile":          {"--data", dir},
		"surge":              {},
	}
}

// flagSetsOf collects every command's flag set, as the commands make them.
func flagSetsOf(t *testing.T) map[string]*flagSet {
	var mu sync.Mutex
	sets := map[string]*flagSet{}
	flagSetHook = func(name string, fs *flagSet) {
		mu.Lock()
		defer mu.Unlock()
		sets[name] = fs
	}
	defer func() { flagSetHook = nil }()
	for cmd := range commandArgs(t) {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append(strings.Fields(cmd), "--help"), &out, &errb); code != 0 {
			t.Fatalf("pointd %s --help: exit %d: %s", cmd, code, errb.String())
		}
	}
	if len(sets) != len(commandArgs(t)) {
		t.Fatalf("flag sets of %d commands, want %d", len(sets), len(commandArgs(t)))
	}
	return sets
}

// syntaxBad is a value a flag of v's type cannot take at all ("" for text).
func syntaxBad(v flag.Value) string {
	if c, ok := v.(*checkedValue); ok {
		v = c.Value
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return "nonsense" // a flag of its own type (--fault)
	}
	switch g.Get().(type) {
	case bool:
		return "maybe"
	case int, int64, float64:
		return "lots"
	case uint, uint64:
		return "-1"
	case time.Duration:
		return "5" // a duration without its unit
	}
	return ""
}

// TestEveryFlagRefusesABadValueByName tries a bad value for every flag of
// every command and reads the message: it must name the flag (or the
// variable it came from) and the value, so that the operator knows what to
// change. A flag added without a case here fails this test.
func TestEveryFlagRefusesABadValueByName(t *testing.T) {
	tmp := t.TempDir()
	aFile := filepath.Join(tmp, "a-file")
	if err := os.WriteFile(aFile, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(tmp, "missing", "x")
	// Values each flag refuses beyond its type ("command/flag" first, then
	// "flag"), with what else the case needs before it.
	type bad struct {
		value string
		with  []string
	}
	semantic := map[string]bad{
		"addr": {value: "nohost"}, "mode": {value: "verbose"}, "write-queue": {value: "0"}, "batch-max": {value: "0"},
		"batch-linger": {value: "-1s"}, "serve/request-timeout": {value: "50ms"}, "expiry-interval": {value: "10ms"},
		"log-level": {value: "verbose"}, "alerts": {value: missing}, "verify-interval": {value: "-1s"},
		"test-drop-every": {value: "-1"}, "key-cache-ttl": {value: "1h"}, "notice-max-age": {value: "-1s"},
		"badge-poll": {value: "10ms"}, "otp-webhook": {value: "sms.example"},
		"otp-webhook-secret":  {value: "short", with: []string{"--otp-webhook", "https://sms.example/send"}},
		"otp-webhook-timeout": {value: "1h"}, "otp-ttl": {value: "2h"}, "otp-max-attempts": {value: "0"},
		"session-ttl": {value: "1s"}, "otp-phone-limit": {value: "0"}, "otp-ip-limit": {value: "0"},
		"redis": {value: "http://127.0.0.1:6379"}, "redis-prefix": {value: strings.Repeat("p", 101)},
		"rate-limit-key": {value: "-1"}, "rate-limit-key-burst": {value: "-1"}, "rate-limit-ip": {value: "-1"},
		"rate-limit-ip-burst": {value: "-1"}, "admission-target": {value: "0s"}, "admission-queue": {value: "-1"},
		"admission-wait": {value: "2s"}, "poll-interval": {value: "0s"},
		"data": {value: aFile}, "db": {value: "mysql://db.example/x"}, "db-conns": {value: "1"}, "data-key": {value: "notakey"},
		"role": {value: "superuser"}, "keys create/merchant": {value: "m1"}, "keys create/store": {value: "s1"},
		"keys create/name": {value: "  ", with: []string{"--role", "app"}},
		"into":             {value: "no-such-member"}, "reason": {value: "   ", with: []string{"--into", "A"}},
		"from": {value: "yesterday"}, "to": {value: "soon"},
		"receipts": {value: missing}, "fix": {value: aFile, with: []string{"--receipts", missing}}, "apply": {value: missing},
		"target": {value: "ftp://x"}, "profile": {value: "nosuch"}, "duration": {value: "-1s"}, "rate": {value: "-1"},
		"members": {value: "-1"}, "stores": {value: "-1"}, "report": {value: filepath.Join(missing, "r.html")},
		"spawn": {value: "  "}, "spawn-data": {value: aFile}, "spawn-logs": {value: aFile},
		"server-binary": {value: missing}, "surge/request-timeout": {value: "-1s"},
	}
	// Text flags that take any value, and why.
	anyValue := map[string]string{
		"incident/store": "a filter: a store that does not exist lists nothing",
		"admin-key":      "only the target server can tell a wrong key",
		"cleanup":        "a run id: only the target server knows its runs",
	}

	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	try := func(t *testing.T, cmd string, args []string, flagName, value, env string) {
		t.Helper()
		ctx := context.Background()
		if cmd == "serve" {
			ctx = stopped // a serve that gets past its checks stops at once, and passes no case
		}
		var out, errb bytes.Buffer
		code := run(ctx, append(strings.Fields(cmd), args...), &out, &errb)
		msg := errb.String()
		if code == 0 {
			t.Fatalf("pointd %s took --%s %q", cmd, flagName, value)
		}
		named := "--" + flagName
		if env != "" {
			named = env + "="
		}
		if !strings.Contains(msg, named) {
			t.Errorf("the message does not name %s: %q", named, msg)
		}
		if secretFlags[flagName] {
			if strings.Contains(msg, value) || !strings.Contains(msg, "(hidden)") {
				t.Errorf("the message shows the secret value of --%s: %q", flagName, msg)
			}
		} else if !strings.Contains(msg, strings.TrimSpace(value)) {
			t.Errorf("the message does not repeat the value %q: %q", value, msg)
		}
		if len(strings.Split(strings.TrimSpace(msg), "\n")) > 2 {
			t.Errorf("the message is buried in a flag list:\n%s", msg)
		}
	}

	base := commandArgs(t)
	sets := flagSetsOf(t)
	cmds := make([]string, 0, len(sets))
	for c := range sets {
		cmds = append(cmds, c)
	}
	sort.Strings(cmds)
	for _, cmd := range cmds {
		sets[cmd].VisitAll(func(f *flag.Flag) {
			args := base[cmd]
			if cmd == "members merge" && f.Name != "into" && f.Name != "reason" {
				args = append([]string{"--into", "A"}, args...)
			}
			if v := syntaxBad(f.Value); v != "" {
				t.Run(cmd+" --"+f.Name+" "+v, func(t *testing.T) {
					// --name=value: a true/false flag takes its value no other way
					try(t, cmd, append(append([]string{}, args...), "--"+f.Name+"="+v), f.Name, v, "")
				})
				if !commandOnly[f.Name] {
					t.Run(cmd+" "+envName(f.Name)+"="+v, func(t *testing.T) {
						t.Setenv(envName(f.Name), v)
						try(t, cmd, args, f.Name, v, envName(f.Name))
					})
				}
			}
			b, ok := semantic[cmd+"/"+f.Name]
			if !ok {
				b, ok = semantic[f.Name]
			}
			if !ok {
				_, free := anyValue[cmd+"/"+f.Name]
				if _, free2 := anyValue[f.Name]; !free && !free2 && syntaxBad(f.Value) == "" {
					t.Errorf("pointd %s --%s: no bad value to try; add one here (or say why it takes any)", cmd, f.Name)
				}
				return
			}
			t.Run(cmd+" --"+f.Name+" "+b.value, func(t *testing.T) {
				a := append(append(append([]string{}, args...), b.with...), "--"+f.Name, b.value)
				try(t, cmd, a, f.Name, b.value, "")
			})
		})
	}
}

// The usage texts list every role a key may have.
func TestUsageListsEveryRole(t *testing.T) {
	var out, errb bytes.Buffer
	run(context.Background(), []string{"keys"}, &out, &errb)
	for _, text := range []struct{ name, s string }{{"pointd", usage}, {"pointd keys", errb.String()}} {
		for _, r := range []auth.Role{auth.RoleAdmin, auth.RoleViewer, auth.RolePOS, auth.RoleApp} {
			if !strings.Contains(text.s, string(r)) {
				t.Errorf("the usage of %s does not list the role %s:\n%s", text.name, r, text.s)
			}
		}
	}
	if !strings.Contains(errb.String(), "admin|viewer|pos|app") || !strings.Contains(usage, "admin|viewer|pos|app") {
		t.Errorf("usage texts list the roles as %q and %q", usage, errb.String())
	}
}

// An unknown flag is answered with the nearest known one.
func TestUnknownFlagSuggestsTheNearest(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "--bach-max", "3"}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), "unknown flag --bach-max: did you mean --batch-max?") {
		t.Errorf("exit %d: %q", code, errb.String())
	}
}
