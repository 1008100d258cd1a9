package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/privacy"
)

// testDataKey is a data key for tests that run pointd on PostgreSQL, which
// refuses to start without one.
const testDataKey = "cG9pbnRkIHRlc3QgZGF0YSBrZXkgLSAzMiBieXRlcyE="

func TestServeDataKey(t *testing.T) {
	if k, err := privacy.ParseKey(testDataKey); err != nil || len(k) != privacy.KeySize {
		t.Fatalf("testDataKey: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a serve that gets past its checks stops at once
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr; "" for a clean stop
	}{
		{"PostgreSQL without a data key is refused", []string{"--db", "postgres://127.0.0.1:1/none"}, "--data-key (or POINTD_DATA_KEY) is required with PostgreSQL"},
		{"a data key that is not base64 is refused", []string{"--data", t.TempDir(), "--data-key", "not a key"}, "--data-key (hidden): the data key is not base64"},
		{"a data key of the wrong length is refused", []string{"--data", t.TempDir(), "--data-key", "c2hvcnQ="}, "--data-key (hidden): the data key must be 32 bytes"},
		{"a webhook without a secret is refused", []string{"--data", t.TempDir(), "--otp-webhook", "https://sms.example/send"}, "--otp-webhook-secret"},
		{"a webhook that is not a URL is refused", []string{"--data", t.TempDir(), "--otp-webhook", "sms.example", "--otp-webhook-secret", "0123456789abcdef"}, "--otp-webhook sms.example: must be an http(s) URL"},
		{"a code lifetime out of range is refused", []string{"--data", t.TempDir(), "--otp-ttl", "2h"}, "--otp-ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, tc.args...), &out, &errb)
			if code == 0 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want a refusal with %q", code, errb.String(), tc.want)
			}
		})
	}

	t.Run("SQLite makes a key file once and keeps it", func(t *testing.T) {
		dir := t.TempDir()
		if code, errOut := serveBriefly(t, "--data", dir); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		k1, err := os.ReadFile(filepath.Join(dir, privacy.KeyFileName))
		if err != nil {
			t.Fatal(err)
		}
		if code, errOut := serveBriefly(t, "--data", dir); code != 0 {
			t.Fatalf("second start: exit %d: %s", code, errOut)
		}
		if k2, _ := os.ReadFile(filepath.Join(dir, privacy.KeyFileName)); !bytes.Equal(k1, k2) {
			t.Error("the key file changed on the second start")
		}
	})

	t.Run("PostgreSQL starts with a data key", func(t *testing.T) {
		if code, errOut := serveBriefly(t, "--db", pgtest.DSN(t), "--data-key", testDataKey); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
	})
}

// serveBriefly runs pointd serve until it listens, then stops it, and
// returns its exit status and stderr.
func serveBriefly(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), &out, &errb) }()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(out.String(), "listening on") {
		select {
		case code := <-done:
			return code, errb.String()
		case <-deadline:
			t.Fatalf("pointd serve did not listen in 30 s: %s", errb.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	return <-done, errb.String()
}

// Whoever reads a log that holds login codes can log in as any member: a
// live server on PostgreSQL without a webhook writes none there.
func TestLoginCodesOnlyGoWhereTheyShould(t *testing.T) {
	f := memberFlags{}
	for _, c := range []struct {
		name     string
		mode     auth.Mode
		postgres bool
		flags    memberFlags
		want     string
	}{
		{"live PostgreSQL without a webhook: nowhere", auth.ModeLive, true, f, "noSender"},
		{"live PostgreSQL with --otp-log-codes: the log", auth.ModeLive, true, memberFlags{logCodes: true}, "<nil>"},
		{"live SQLite (trying pointd): the log", auth.ModeLive, false, f, "<nil>"},
		{"test mode on PostgreSQL: the log", auth.ModeTest, true, f, "<nil>"},
		{"a webhook: the webhook", auth.ModeLive, true, memberFlags{webhook: "https://sms.example.com/send", webhookSecret: "0123456789abcdef"}, "member.WebhookSender"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := fmt.Sprintf("%T", c.flags.config(c.mode, c.postgres, nil, nil).Sender); got != c.want && !strings.HasSuffix(got, "."+c.want) {
				t.Errorf("sender %s, want %s", got, c.want)
			}
		})
	}
}
