package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
)

func TestRouting(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()

	t.Run("an unknown path is a route_not_found problem", func(t *testing.T) {
		for _, c := range []struct{ name, method, path string }{
			{"the root", "GET", "/"},
			{"a typo of an endpoint", "POST", "/v1/earn"},
			{"another version", "POST", "/v2/earns"},
			{"a path below an endpoint", "GET", "/v1/transactions/x/y"},
			{"a path below the health check", "GET", "/healthz/deep"},
			{"a collection that has no list", "GET", "/v1/transactions"},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				for _, key := range []string{"", h.admin} {
					r := h.do(req{method: c.method, path: c.path, key: key})
					p := problem(t, r, http.StatusNotFound, codeRouteNotFound, "")
					if !strings.Contains(p.Detail, c.path) {
						t.Errorf("the detail does not name the path: %q", p.Detail)
					}
				}
			})
		}
	})

	t.Run("a wrong method is a method_not_allowed problem with an Allow header", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path string
			allow              []string
		}{
			{"GET of the earns", "GET", "/v1/earns", []string{"POST"}},
			{"DELETE of a member", "DELETE", "/v1/members/" + w.member.ID, []string{"GET", "HEAD"}},
			{"PUT of the members", "PUT", "/v1/members", []string{"GET", "HEAD", "POST"}},
			{"POST of the health check", "POST", "/healthz", []string{"GET", "HEAD"}},
			{"GET of a capture", "GET", "/v1/holds/x/capture", []string{"POST"}},
			{"PATCH of a transaction", "PATCH", "/v1/transactions/x", []string{"GET", "HEAD"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				h := h.at(t)
				before := h.headSeq()
				r := h.do(req{method: c.method, path: c.path, key: h.admin, idem: h.idem(), body: `{}`})
				p := problem(t, r, http.StatusMethodNotAllowed, codeMethodNotAllowed, "")
				if !strings.Contains(p.Detail, c.method) {
					t.Errorf("the detail does not name the method: %q", p.Detail)
				}
				allow := r.header.Get("Allow")
				for _, m := range c.allow {
					if !strings.Contains(allow, m) {
						t.Errorf("Allow %q lacks %s", allow, m)
					}
				}
				if strings.Contains(allow, c.method) {
					t.Errorf("Allow %q offers the refused %s", allow, c.method)
				}
				if h.headSeq() != before {
					t.Error("a refused method wrote to the ledger")
				}
			})
		}
	})

	t.Run("every answer carries a request id, and a sane one sent is kept", func(t *testing.T) {
		h := h.at(t)
		r := h.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "trace-123"}})
		if got := r.header.Get("X-Request-Id"); got != "trace-123" {
			t.Errorf("X-Request-Id %q, want trace-123", got)
		}
		r = h.do(req{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": strings.Repeat("x", 65)}})
		if got := r.header.Get("X-Request-Id"); got == "" || len(got) > 64 {
			t.Errorf("an overlong request id comes back as %q", got)
		}
	})
}

func TestHealthAndPing(t *testing.T) {
	h := newHarness(t)
	for _, c := range []struct {
		name, path string
		status     string
	}{
		{"healthz answers 200 without a key", "/healthz", "ok"},
		{"readyz answers 200 without a key", "/readyz", "ready"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			got := want[map[string]any](t, h.get(c.path, ""), http.StatusOK)
			if got["status"] != c.status {
				t.Errorf("status %v, want %q", got["status"], c.status)
			}
		})
	}
	for _, c := range []struct {
		name    string
		body    any
		message string
	}{
		{"ping answers JSON on an empty body", nil, ""},
		{"ping answers JSON on an empty object", `{}`, ""},
		{"ping echoes a message", `{"message":"hello"}`, "hello"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := h.at(t)
			got := want[map[string]any](t, h.post("/v1/ping", h.admin, "", c.body), http.StatusOK)
			if got["pong"] != true || got["message"] != c.message || !strings.HasPrefix(h.admin, got["key_prefix"].(string)) {
				t.Errorf("ping answers %v", got)
			}
		})
	}
	t.Run("ping wants a key", func(t *testing.T) {
		problem(t, h.at(t).post("/v1/ping", "", "", nil), http.StatusUnauthorized, codeUnauthorized, "")
	})
	t.Run("ping decodes strictly", func(t *testing.T) {
		h := h.at(t)
		problem(t, h.post("/v1/ping", h.admin, "", `{"message":"a","message":"b"}`), http.StatusBadRequest, ledger.CodeValidation, "message")
		problem(t, h.post("/v1/ping", h.admin, "", `{"message":"`+strings.Repeat("m", 257)+`"}`), http.StatusBadRequest, ledger.CodeValidation, "message")
	})
}
