package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRawClient(t *testing.T) {
	big := strings.Repeat("x", 10_000) // past net/http's buffer: sent chunked
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/earns" || r.Header.Get("Authorization") != "Bearer k" ||
			r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		switch r.Header.Get("Idempotency-Key") {
		case "small":
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write(body)
		case "chunked":
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, big)
		case "close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			http.Error(w, "no key", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	rc, err := newRawClient(srv.URL, "/v1/earns", "Bearer k", 5*time.Second, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.closeIdle()
	for round := range 3 { // again on kept-alive connections
		for _, tc := range []struct {
			idem, body string
			status     int
			want       string
		}{
			{"small", `{"a":1}`, http.StatusCreated, `{"a":1}`},
			{"chunked", `{}`, http.StatusServiceUnavailable, big},
			{"close", `{}`, http.StatusTooManyRequests, ""},
		} {
			rc.acquire()
			status, body, err := rc.post(tc.idem, []byte(tc.body))
			rc.release()
			if err != nil || status != tc.status || string(body) != tc.want {
				t.Fatalf("round %d, %s: %d %.40q %v; want %d %.40q", round, tc.idem, status, body, err, tc.status, tc.want)
			}
		}
	}
	if _, err := newRawClient("https://example.com", "/", "", time.Second, 1); err == nil {
		t.Error("an https target was taken; the raw client speaks plain HTTP only")
	}
}

func TestEarnAnswer(t *testing.T) {
	body := []byte(`{"id":"019a-tx","seq":7,"type":"earn","member_id":"m1","receipt":"r","purchase_amount":1234,"points":-12,` +
		`"created_at":"2026-12-03T15:00:00Z","postings":[{"account":"x","points":12}],"balance":40,"held":0,"available":40}`)
	if id, points := earnAnswer(body); id != "019a-tx" || points != -12 {
		t.Errorf("earnAnswer: %q %d, want 019a-tx -12", id, points)
	}
	if id, points := earnAnswer([]byte(`{}`)); id != "" || points != 0 {
		t.Errorf("earnAnswer of {}: %q %d", id, points)
	}
}
