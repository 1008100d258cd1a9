package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/privacy"
)

// memberFlags configure members' logins: how codes are sent, how long codes
// and sessions live, and how often a phone or an address may ask.
type memberFlags struct {
	webhook       string
	webhookSecret string
	webhookTO     time.Duration
	codeTTL       time.Duration
	maxAttempts   int
	sessionTTL    time.Duration
	phoneCodes    int
	ipRequests    int
	logCodes      bool
	fs            *flagSet
}

func (f *memberFlags) register(fs *flagSet) {
	f.fs = fs
	fs.StringVar(&f.webhook, "otp-webhook", "", "URL that login codes are POSTed to as JSON (an SMS gateway); empty: codes are written to the log")
	fs.StringVar(&f.webhookSecret, "otp-webhook-secret", "", "secret that signs each webhook request (X-Pointd-Signature, HMAC-SHA256); required with --otp-webhook")
	fs.DurationVar(&f.webhookTO, "otp-webhook-timeout", 5*time.Second, "how long the webhook may take per code")
	fs.DurationVar(&f.codeTTL, "otp-ttl", 5*time.Minute, "how long a login code works")
	fs.IntVar(&f.maxAttempts, "otp-max-attempts", 5, "tries (the right one included) after which a login code stops working")
	fs.DurationVar(&f.sessionTTL, "session-ttl", 30*24*time.Hour, "how long a member's session works")
	fs.IntVar(&f.phoneCodes, "otp-phone-limit", 5, "login codes one phone number may be sent per hour (counted in the database: all instances together)")
	fs.IntVar(&f.ipRequests, "otp-ip-limit", 20, "code requests, and as many login attempts, one client address may make per 10 minutes (per instance)")
	fs.BoolVar(&f.logCodes, "otp-log-codes", false, "write login codes to the log on a live server on PostgreSQL that has no --otp-webhook (whoever reads the log can log in as any member)")
}

func (f *memberFlags) validate() error {
	if f.webhook != "" {
		u, err := url.Parse(f.webhook)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return f.fs.bad("otp-webhook", "must be an http(s) URL, e.g. https://sms.example/send")
		}
		if f.webhookSecret == "" {
			return fmt.Errorf("--otp-webhook-secret (or POINTD_OTP_WEBHOOK_SECRET) of at least 16 characters is required with --otp-webhook")
		}
		if len(f.webhookSecret) < 16 {
			return f.fs.bad("otp-webhook-secret", "must be at least 16 characters (openssl rand -hex 16)")
		}
	}
	if f.webhookTO < 100*time.Millisecond || f.webhookTO > time.Minute {
		return f.fs.bad("otp-webhook-timeout", "must be from 100ms to 1m")
	}
	if f.codeTTL < 30*time.Second || f.codeTTL > time.Hour {
		return f.fs.bad("otp-ttl", "must be from 30s to 1h")
	}
	if f.maxAttempts < 1 || f.maxAttempts > 20 {
		return f.fs.bad("otp-max-attempts", "must be from 1 to 20")
	}
	if f.sessionTTL < time.Minute || f.sessionTTL > 366*24*time.Hour {
		return f.fs.bad("session-ttl", "must be from 1m to 366 days (8784h)")
	}
	if f.phoneCodes < 1 || f.phoneCodes > 100 {
		return f.fs.bad("otp-phone-limit", "must be from 1 to 100")
	}
	if f.ipRequests < 1 || f.ipRequests > 100_000 {
		return f.fs.bad("otp-ip-limit", "must be from 1 to 100000")
	}
	return nil
}

// config is the member service's configuration. Login codes go to the
// webhook; without one they are written to the log, which is what trying
// pointd needs (SQLite, or test mode) but on a live server on PostgreSQL
// would let whoever reads the logs log in as any member: there they are
// not sent at all unless --otp-log-codes says so.
func (f *memberFlags) config(mode auth.Mode, postgres bool, phones *privacy.Phones, log *slog.Logger) member.Config {
	cfg := member.Config{Mode: mode, Phones: phones, Log: log, CodeTTL: f.codeTTL, MaxAttempts: f.maxAttempts,
		SessionTTL: f.sessionTTL, PhoneCodes: f.phoneCodes, IPRequests: f.ipRequests}
	switch {
	case f.webhook != "":
		cfg.Sender = member.WebhookSender{URL: f.webhook, Secret: []byte(f.webhookSecret), Timeout: f.webhookTO}
	case mode == auth.ModeLive && postgres && !f.logCodes:
		cfg.Sender = noSender{}
	}
	return cfg
}

// noSender sends no code: a live server on PostgreSQL without --otp-webhook.
type noSender struct{}

func (noSender) Send(context.Context, member.Code) error {
	return errors.New("no --otp-webhook: a live server on PostgreSQL writes no login code to its log unless --otp-log-codes")
}
