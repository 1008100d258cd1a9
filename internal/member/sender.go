package member

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/pointd/pointd/internal/privacy"
)

// Code is a login code on its way to a member's phone.
type Code struct {
	Phone     string    `json:"phone"`
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
	Message   string    `json:"message"` // a ready-made text for the SMS
}

// Sender delivers login codes. Send is called off the request path (the
// answer must not depend on whether a phone is a member's), with its own
// deadline.
type Sender interface {
	Send(ctx context.Context, c Code) error
}

// LogSender writes codes to the server log: the default, for development
// and for trying pointd out. The phone is masked; the code is not, since
// reading it is the point.
type LogSender struct{ Log *slog.Logger }

// Send logs c.
func (s LogSender) Send(_ context.Context, c Code) error {
	l := s.Log
	if l == nil {
		l = slog.Default()
	}
	l.Info("login code (log sender: configure --otp-webhook to send real SMS)",
		"phone", privacy.Mask(c.Phone), "code", c.Code, "expires_at", c.ExpiresAt)
	return nil
}

// HeaderSignature and HeaderTimestamp are how a webhook receiver checks a
// request came from pointd: the signature is "sha256=" and the hex
// HMAC-SHA256, under the shared secret, of the timestamp, a ".", and the body.
const (
	HeaderSignature = "X-Pointd-Signature"
	HeaderTimestamp = "X-Pointd-Timestamp"
)

// WebhookSender posts each code as JSON to an SMS gateway (or a small
// adapter in front of one).
type WebhookSender struct {
	URL     string
	Secret  []byte        // signs every request; required
	Timeout time.Duration // per request; 5 s when zero
	Client  *http.Client  // http.DefaultClient's transport when nil
}

// Send posts c and wants a 2xx answer.
func (s WebhookSender) Send(ctx context.Context, c Code) error {
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(s.Secret, ts, body))
	client := s.Client
	if client == nil {
		client = &http.Client{}
	}
	resp, err := client.Do(req)
	if err != nil {
		// The URL may hold a token of the gateway's: name the host only.
		return fmt.Errorf("otp webhook %s: %w", req.URL.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("otp webhook %s answered %s", req.URL.Host, resp.Status)
	}
	return nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(interface{ Unwrap() error }); ok && ue.Unwrap() != nil {
		return ue.Unwrap()
	}
	return err
}

// Sign is the signature header of a webhook request.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
