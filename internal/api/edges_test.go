package api

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestContentLengthAndTransferEncoding: a request framed both ways is
// answered and its connection closed, so that bytes a proxy in front took
// for the next request are never read as one (RFC 9112 §6.3). Go's server
// alone frames the body by the encoding, drops Content-Length and keeps the
// connection: without closeFramedTwice the pipelined request after the body
// is answered as well, which is what this test catches.
func TestContentLengthAndTransferEncoding(t *testing.T) {
	h := newHarness(t)
	send := func(t *testing.T, raw string) (answers []*http.Response, closed bool) {
		t.Helper()
		c, err := net.Dial("tcp", h.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Only a guard against a hang: a kept connection shows as a second
		// answer, not as this deadline.
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return answers, true
				}
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					return answers, false
				}
				t.Fatalf("reading the answers: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answers = append(answers, resp)
		}
	}

	// The body is empty by its chunks ("0"), five bytes long by its length:
	// a proxy trusting the length would see "0\r\n\r\n" and then the GET,
	// which pointd must never answer on this connection.
	smuggle := "POST /v1/ping HTTP/1.1\r\nHost: pointd\r\nAuthorization: Bearer " + h.admin +
		"\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\n" +
		"GET /v1/merchants HTTP/1.1\r\nHost: pointd\r\nAuthorization: Bearer " + h.admin + "\r\n\r\n"
	answers, closed := send(t, smuggle)
	if len(answers) != 1 || !closed {
		t.Fatalf("a request with Content-Length and Transfer-Encoding: %d answers, connection closed %v; want 1 answer, then closed", len(answers), closed)
	}
	if !answers[0].Close {
		t.Errorf("the answer does not say Connection: close")
	}

	// A request framed by its length alone keeps its connection: the two
	// pipelined requests are both answered.
	plain := "GET /v1/merchants HTTP/1.1\r\nHost: pointd\r\nAuthorization: Bearer " + h.admin + "\r\n\r\n"
	c, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, plain+plain); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d of two pipelined plain requests: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Errorf("plain request %d: %d, close %v", i+1, resp.StatusCode, resp.Close)
		}
	}
}

// TestPprofCmdlineRedacted: the command line the profiler shows carries no
// password of a database or Redis URL and no key.
func TestPprofCmdlineRedacted(t *testing.T) {
	args := []string{"pointd", "serve",
		"--db", "postgres://pointd:hunter2-db@db.example:5432/pointd?sslmode=require",
		"--redis=redis://:hunter2-redis@cache.example:6379/0",
		"--db=host=db.example user=pointd password=hunter2-kv dbname=pointd",
		"--data-key", "hunter2-datakey",
		"-data-key=hunter2-datakey2",
		"--otp-webhook-secret", "hunter2-webhook",
		"--db", "postgres://db.example/pointd?password=hunter2-query",
		"--addr", ":8080", "pd_live_hunter2secretkey"}
	got := strings.Join(RedactArgs(args), " ")
	if strings.Contains(got, "hunter2") {
		t.Errorf("secrets left in %q", got)
	}
	for _, want := range []string{"postgres://pointd:***@db.example:5432/pointd?sslmode=require",
		"--redis=redis://:***@cache.example:6379/0", "password=***", "--addr :8080", "--data-key ***"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lost %q", got, want)
		}
	}
}
