package member

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestWebhookSenderSigns(t *testing.T) {
	secret := []byte("a shared secret of the gateway")
	got := make(chan Code, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts := r.Header.Get(HeaderTimestamp)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" ||
			r.Header.Get(HeaderSignature) != Sign(secret, ts, body) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var c Code
		if err := json.Unmarshal(body, &c); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- c
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	c := Code{Phone: "+821012345678", Code: "123456", ExpiresAt: time.Now().UTC(), Message: "Your code is 123456"}
	if err := (WebhookSender{URL: srv.URL, Secret: secret}).Send(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Phone != c.Phone || r.Code != c.Code || r.Message != c.Message {
		t.Errorf("the gateway got %+v", r)
	}
	// The wrong secret: the gateway refuses, and the sender says so
	// without the phone number.
	err := (WebhookSender{URL: srv.URL, Secret: []byte("another secret")}).Send(context.Background(), c)
	if err == nil || strings.Contains(err.Error(), "1012345678") {
		t.Errorf("a refused request: %v", err)
	}
}

func TestWebhookSenderTimesOut(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	err := (WebhookSender{URL: srv.URL + "/send?token=gateway-secret", Secret: []byte("s"), Timeout: 100 * time.Millisecond}).
		Send(context.Background(), Code{Phone: "+15550001111", Code: "000000"})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a gateway that never answers: %v after %v", err, time.Since(start))
	}
	if strings.Contains(err.Error(), "gateway-secret") {
		t.Errorf("the error shows the URL's query: %v", err)
	}
}
