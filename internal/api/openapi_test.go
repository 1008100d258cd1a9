package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/notice"
)

// The OpenAPI document (openapi.json) is checked here against the server
// itself: its routes are the routes server.go registers, both ways; every
// request example in it is sent to the real handlers, in document order, and
// the answer must have the status of the answer example of the same name and
// validate against that answer's schema; its structure and every $ref hold.

// spec is the parsed document.
type spec struct {
	root  map[string]any
	order map[string][]string // JSON pointer of every object → its keys in document order
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(openapiJSON, &root); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	order, err := keyOrder(openapiJSON)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return &spec{root: root, order: order}
}

// keyOrder records the keys of every object of a JSON document in document
// order, by JSON pointer: encoding/json's maps forget it, and the examples
// run in the order the document gives them.
func keyOrder(raw []byte) (map[string][]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	out := map[string][]string{}
	var walk func(ptr string) error
	walk = func(ptr string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		d, ok := tok.(json.Delim)
		if !ok {
			return nil
		}
		if d == '{' {
			keys := []string{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				keys = append(keys, k.(string))
				if err := walk(ptr + "/" + escapePointer(k.(string))); err != nil {
					return err
				}
			}
			out[ptr] = keys
		} else {
			for i := 0; dec.More(); i++ {
				if err := walk(ptr + "/" + strconv.Itoa(i)); err != nil {
					return err
				}
			}
		}
		_, err = dec.Token() // the closing delimiter
		return err
	}
	return out, walk("")
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// lookup finds a JSON pointer ("#/components/schemas/X" or "/paths/...").
func (s *spec) lookup(ptr string) (any, bool) {
	ptr = strings.TrimPrefix(ptr, "#")
	var node any = s.root
	if ptr == "" {
		return node, true
	}
	for _, part := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		switch n := node.(type) {
		case map[string]any:
			v, ok := n[part]
			if !ok {
				return nil, false
			}
			node = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// resolve follows $ref until it reaches a node that is not a reference.
func (s *spec) resolve(node any) (any, error) {
	for range 20 {
		m, ok := node.(map[string]any)
		if !ok {
			return node, nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return node, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return nil, fmt.Errorf("$ref %q is not local", ref)
		}
		target, ok := s.lookup(ref)
		if !ok {
			return nil, fmt.Errorf("$ref %q resolves to nothing", ref)
		}
		node = target
	}
	return nil, fmt.Errorf("$ref loop")
}

func (s *spec) obj(t *testing.T, node any) map[string]any {
	t.Helper()
	n, err := s.resolve(node)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := n.(map[string]any)
	if !ok && n != nil {
		t.Fatalf("%v is not an object", n)
	}
	return m
}

// keys lists the keys of the object at ptr in document order (sorted if the
// object is not at ptr, e.g. reached through a $ref).
func (s *spec) keys(ptr string, m map[string]any) []string {
	if k, ok := s.order[ptr]; ok && len(k) == len(m) {
		return k
	}
	k := make([]string, 0, len(m))
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	return k
}

type operation struct {
	method, path string // "GET", "/v1/members/{id}"
	ptr          string // JSON pointer of the operation object
	m            map[string]any
}

func (o operation) String() string { return o.method + " " + o.path }

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// operations lists the document's operations in document order.
func (s *spec) operations(t *testing.T) []operation {
	t.Helper()
	paths := s.obj(t, s.root["paths"])
	var ops []operation
	for _, p := range s.keys("/paths", paths) {
		ptr := "/paths/" + escapePointer(p)
		item := s.obj(t, paths[p])
		for _, m := range s.keys(ptr, item) {
			if !slices.Contains(httpMethods, m) {
				continue
			}
			ops = append(ops, operation{strings.ToUpper(m), p, ptr + "/" + m, s.obj(t, item[m])})
		}
	}
	return ops
}

// --- 1. The routes -------------------------------------------------------

// undocumentedRoutes are registered but deliberately left out of the
// document (its info.description says so).
var undocumentedRoutes = regexp.MustCompile(`^[A-Z]+ /debug/pprof/`)

// registeredRoutes reads the patterns server.go registers: the string
// literal passed to handle(...) or mux.Handle(...).
func registeredRoutes(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "server.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		switch fn := call.Fun.(type) {
		case *ast.Ident:
			if fn.Name != "handle" {
				return true
			}
		case *ast.SelectorExpr:
			if fn.Sel.Name != "Handle" && fn.Sel.Name != "HandleFunc" {
				return true
			}
		default:
			return true
		}
		if _, ok := call.Args[0].(*ast.Ident); ok {
			return true // handle's own mux.Handle(pattern, ...)
		}
		lit, ok := call.Args[0].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("server.go: a route registered with a pattern that is not a string literal at %d", call.Pos())
			return true
		}
		pattern, err := strconv.Unquote(lit.Value)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[A-Z]+ /`).MatchString(pattern) {
			t.Errorf("server.go: route %q has no method", pattern)
		}
		routes[pattern] = true
		return true
	})
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in server.go: %v", len(routes), routes)
	}
	return routes
}

func TestOpenAPIRoutesAreTheServersRoutes(t *testing.T) {
	s := loadSpec(t)
	documented := map[string]bool{}
	for _, o := range s.operations(t) {
		documented[o.String()] = true
	}
	registered := registeredRoutes(t)
	for r := range registered {
		if !documented[r] && !undocumentedRoutes.MatchString(r) {
			t.Errorf("server.go registers %s; openapi.json does not describe it", r)
		}
	}
	for r := range documented {
		if !registered[r] {
			t.Errorf("openapi.json describes %s; server.go registers no such route", r)
		}
		if undocumentedRoutes.MatchString(r) {
			t.Errorf("openapi.json describes %s, which is meant to be left out", r)
		}
	}

	// And the running server agrees: every documented route is routed (a
	// request without an Idempotency-Key writes nothing).
	h, _ := metricsServer(t, false, nil, ledger.WriterConfig{})
	for r := range documented {
		method, path, _ := strings.Cut(r, " ")
		path = strings.ReplaceAll(path, "{id}", "no-such-id")
		rep := h.do(req{method: method, path: path, key: h.admin})
		var p Problem
		_ = json.Unmarshal(rep.body, &p)
		if p.Code == codeRouteNotFound || p.Code == codeMethodNotAllowed {
			t.Errorf("%s: the server answers %s", r, rep)
		}
	}
}

// --- 2. The examples against the real handlers ----------------------------

// The document's examples name these ids, card number and phone; the test
// runs them on a real directory and ledger, substituting its own.
const (
	exMerchant = "0193a0c4-1f2e-7a3b-8c4d-5e6f7a8b9c01"
	exStore    = "0193a0c4-2a3b-7c4d-9e5f-6a7b8c9d0e02"
	exMember   = "0193a0c4-3b4c-7d5e-8f6a-7b8c9d0e1f03"
	exMerged   = "0193a0c4-3b4c-7d5e-8f6a-7b8c9d0e1f04" // a second member, merged into exMember
	exEarn     = "0193a0d1-4c5d-7e6f-9a7b-8c9d0e1f2a04" // an earn of 25 000 at merchant A's rate
	exHold1    = "0193a0d2-5d6e-7f7a-8b8c-9d0e1f2a3b05" // an active hold of 100 points
	exHold2    = "0193a0d2-6e7f-7a8b-9c9d-0e1f2a3b4c06" // an active hold of 50 points
	exHold3    = "0193a0d2-7f8a-7b9c-8d0e-1f2a3b4c5d07" // an active hold of 30 points
	exKey      = "0193a0f3-1d2e-7f3a-8b4c-5d6e7f8a9b13" // a viewer key the back-office examples rotate and revoke
	exNotice   = "0193a0e1-8a9b-7c0d-9e1f-2a3b4c5d6e08" // a published notice
	exCard     = "9410001234567892"
	exPhone    = "+15550123456"
	// A history cursor (sealed, so the test seals its own in its place).
	exCursor = "AQ6xg8Uz0vN9mWk2cRbT4jYpLq7sEfHa1dGiXoZuKw3JeVn5"
)

// exampleRequest is one request the document shows.
type exampleRequest struct {
	name  string // "" for an operation without named examples
	path  string
	query url.Values
	body  any // nil: none
	idem  bool
}

// requests builds the operation's example requests in document order: one
// per example name found on its parameters or its request body.
func (s *spec) requests(t *testing.T, o operation) []exampleRequest {
	t.Helper()
	params, _ := o.m["parameters"].([]any)
	var names []string
	add := func(ptr string, exs map[string]any) {
		for _, n := range s.keys(ptr, exs) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	for i, p := range params {
		pm := s.obj(t, p)
		if exs, ok := pm["examples"].(map[string]any); ok {
			add(fmt.Sprintf("%s/parameters/%d/examples", o.ptr, i), exs)
		}
	}
	var bodyExamples map[string]any
	if rb, ok := o.m["requestBody"]; ok {
		content := s.obj(t, rb)["content"].(map[string]any)
		media, ok := content["application/json"].(map[string]any)
		if !ok || len(content) != 1 {
			t.Fatalf("%s: the request body must be application/json only", o)
		}
		bodyExamples, _ = media["examples"].(map[string]any)
		add(o.ptr+"/requestBody/content/application~1json/examples", bodyExamples)
	}
	if len(names) == 0 {
		names = []string{""}
	}
	var out []exampleRequest
	for _, name := range names {
		r := exampleRequest{name: name, path: o.path, query: url.Values{}}
		for _, p := range params {
			pm := s.obj(t, p)
			value, ok := pm["example"]
			if exs, has := pm["examples"].(map[string]any); has {
				var e map[string]any
				e, ok = exs[name].(map[string]any)
				if ok {
					value = s.obj(t, e)["value"]
				}
			}
			pname := pm["name"].(string)
			switch pm["in"] {
			case "path":
				if !ok {
					t.Fatalf("%s: path parameter %s has no example for %q", o, pname, name)
				}
				r.path = strings.ReplaceAll(r.path, "{"+pname+"}", fmt.Sprint(value))
			case "query":
				if ok {
					r.query.Set(pname, fmt.Sprint(value))
				}
			case "header":
				if pname == headerClientIP {
					continue // optional, and meaningful only with an app key
				}
				if pname == "If-None-Match" { // conditional reads: TestNoticeListOrderPaginationAndConditionalGets
					continue
				}
				if pname != headerIdempotencyKey {
					t.Fatalf("%s: header parameter %s is not known to the test", o, pname)
				}
				r.idem = true
			}
		}
		if e, ok := bodyExamples[name]; ok {
			r.body = s.obj(t, e)["value"]
		}
		out = append(out, r)
	}
	return out
}

// answerFor is the documented answer that an example name is paired with:
// the response whose examples include the name. An unnamed request expects
// the operation's single 2xx response.
func (s *spec) answerFor(t *testing.T, o operation, name string) (status int, example any) {
	t.Helper()
	responses := s.obj(t, o.m["responses"])
	found := 0
	for code, r := range responses {
		st, err := strconv.Atoi(code)
		if err != nil {
			t.Fatalf("%s: response %q is not a status", o, code)
		}
		content, _ := s.obj(t, r)["content"].(map[string]any) // none on a 304
		for _, media := range content {
			exs, _ := media.(map[string]any)["examples"].(map[string]any)
			if name == "" && st/100 == 2 {
				found++
				status = st
				if len(exs) == 1 {
					for _, e := range exs {
						example = s.obj(t, e)["value"]
					}
				}
			} else if e, ok := exs[name]; ok && name != "" {
				found++
				status, example = st, s.obj(t, e)["value"]
			}
		}
	}
	if found != 1 {
		t.Fatalf("%s: request example %q is paired with %d answer examples, want 1", o, name, found)
	}
	return status, example
}

// checkAnswer fails unless rep is an answer the operation documents: its
// status is listed, its Content-Type is the documented media type, its body
// validates against the documented schema and the documented X-Request-Id
// is there. It returns the body decoded (nil for a body that is not JSON).
func (s *spec) checkAnswer(t *testing.T, o operation, rep reply) any {
	t.Helper()
	responses := s.obj(t, o.m["responses"])
	r, ok := responses[strconv.Itoa(rep.status)]
	if !ok {
		t.Errorf("%s answered %d, which the document does not list: %s", o, rep.status, rep.body)
		return nil
	}
	resp := s.obj(t, r)
	if hs, ok := resp["headers"].(map[string]any); ok {
		if _, ok := hs["X-Request-Id"]; ok && rep.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", o)
		}
	}
	content, _ := resp["content"].(map[string]any)
	if rep.status == http.StatusNotModified && len(content) == 0 && len(rep.body) == 0 {
		return nil
	}
	if len(content) != 1 {
		t.Fatalf("%s %d: want one media type, have %d", o, rep.status, len(content))
	}
	for mediaType, media := range content {
		got, _, err := mime.ParseMediaType(rep.header.Get("Content-Type"))
		if err != nil || got != mediaType {
			t.Errorf("%s %d: Content-Type %q, documented %s", o, rep.status, rep.header.Get("Content-Type"), mediaType)
		}
		if mediaType != "application/json" && !strings.HasSuffix(mediaType, "+json") {
			return nil
		}
		var v any
		if err := json.Unmarshal(rep.body, &v); err != nil {
			t.Errorf("%s %d: the body is not JSON: %v: %s", o, rep.status, err, rep.body)
			return nil
		}
		for _, e := range validate(s, media.(map[string]any)["schema"], v, "") {
			t.Errorf("%s %d: the answer does not match the documented schema: %s\n%s", o, rep.status, e, rep.body)
		}
		return v
	}
	return nil
}

func TestOpenAPIExamplesAgainstTheHandlers(t *testing.T) {
	s := loadSpec(t)
	h, _ := metricsServer(t, false, func(c *Config) {
		c.DBStats = func() DBStats { return DBStats{InUse: 1, Max: 8} }
	}, ledger.WriterConfig{})
	w := h.newWorld()

	// The directory and ledger the examples name.
	earned := h.earn(h.admin, w.storeA, w.member.ID, 25_000)
	hold := func(points int64) string {
		return want[opResponse](t, h.post("/v1/holds", h.admin, h.idem(), map[string]any{
			"member_id": w.member.ID, "store_id": w.storeA, "points": points}), http.StatusCreated).ID
	}
	published := want[notice.Notice](t, h.post("/v1/notices", h.admin, h.idem(), map[string]any{
		"title": "Double points this weekend", "body": "Earn twice the points.", "pinned": true,
		"image_url": "https://cdn.example.com/notices/double.png", "ramp_seconds": 1200}), http.StatusCreated)
	merged := h.createMember(fmt.Sprintf("+1555%07d", h.seq.Add(1)), "Ada L.")
	h.earn(h.admin, w.storeA, merged.ID, 2_500)
	sub := strings.NewReplacer(exMerchant, w.merchantA, exStore, w.storeA, exMember, w.member.ID, exMerged, merged.ID,
		exEarn, earned.ID, exHold1, hold(100), exHold2, hold(50), exHold3, hold(30),
		exCard, w.member.CardNumber, exPhone, w.member.Phone, exNotice, published.ID,
		exCursor, h.api.makeCursor(historyPurpose(auth.Key{Role: auth.RoleAdmin}, w.member.ID), earned.Seq+1),
		exKey, want[keyResponse](t, h.post("/v1/keys", h.admin, h.idem(), map[string]any{"role": "viewer", "name": "examples"}), http.StatusCreated).ID)

	// The member side: login codes land in an inbox, and the example code
	// is the one last sent to the example phone; operations for members
	// run with a session of a member of their own, who has earned once
	// (DELETE /v1/me withdraws that member only).
	box := newInbox()
	ms := h.store.(member.Store)
	h.api.UseMembers(member.NewService(member.Config{Mode: h.cfg.mode, Sender: box, IPRequests: 100_000, PhoneCodes: 1000}, ms, h.store), ms)
	memberSession := func(t *testing.T) string {
		phone := fmt.Sprintf("+1555444%04d", h.seq.Add(1))
		mh := &memberSide{harness: h.at(t), inbox: box}
		s := mh.login(phone)
		h.at(t).earn(w.posA, w.storeA, s.MemberID, 25_000)
		return s.Token
	}
	exampleCode := func(t *testing.T, body string) string {
		if !strings.Contains(body, `"123456"`) {
			return body
		}
		return strings.ReplaceAll(body, `"123456"`, `"`+box.last(t, w.member.Phone, 1+max(0, box.count(w.member.Phone)-1))+`"`)
	}

	build := func(o operation, r exampleRequest, key string) req {
		q := url.Values{}
		for k, vs := range r.query {
			q[k] = []string{sub.Replace(vs[0])}
		}
		path := sub.Replace(r.path)
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		out := req{method: o.method, path: path, key: key}
		if r.idem {
			out.idem = h.idem()
		}
		if r.body != nil {
			b, err := json.Marshal(r.body)
			if err != nil {
				t.Fatal(err)
			}
			out.body = []byte(exampleCode(t, sub.Replace(string(b))))
		}
		return out
	}

	ran := 0
	for _, o := range s.operations(t) {
		t.Run(o.String(), func(t *testing.T) {
			h := h.at(t)
			secured, roles := s.security(t, o)
			key := ""
			if secured {
				key = h.admin
			}
			if slices.Equal(roles, []string{"member"}) {
				key = memberSession(t)
			}
			reqs := s.requests(t, o)
			for _, r := range reqs {
				wantStatus, example := s.answerFor(t, o, r.name)
				rq := build(o, r, key)
				rep := h.do(rq)
				ran++
				if rep.status != wantStatus {
					t.Errorf("example %q: %s %s answered %s; the document pairs it with %d", r.name, rq.method, rq.path, rep, wantStatus)
				}
				got := s.checkAnswer(t, o, rep)
				sameShape(t, fmt.Sprintf("%s example %q", o, r.name), got, example)
				if rep.status/100 == 2 && rq.idem != "" {
					// A retry with the same key: a replay where the document
					// says so, and then byte for byte the same answer.
					again := h.do(rq)
					replayable := s.documentsHeader(t, o, rep.status, headerReplayed)
					switch {
					case replayable && (again.status != rep.status || again.header.Get(headerReplayed) != "true" || !bytes.Equal(again.body, rep.body)):
						t.Errorf("example %q: the retry answered %s (%s: %q), not the first answer %s", r.name, again, headerReplayed, again.header.Get(headerReplayed), rep)
					case !replayable && (again.status/100 == 2 || again.header.Get(headerReplayed) != ""):
						t.Errorf("example %q: the document says no replay; the retry answered %s", r.name, again)
					}
					s.checkAnswer(t, o, again)
				}
				if rep.header.Get(headerReplayed) != "" {
					t.Errorf("example %q: a first answer is marked as a replay", r.name)
				}
			}

			// The documented bounds of the request body are the handler's:
			// just past each (and with an unknown name) it refuses naming
			// the field; at each it does not.
			for _, r := range reqs {
				body, ok := r.body.(map[string]any)
				if st, _ := s.answerFor(t, o, r.name); !ok || st/100 != 2 {
					continue
				}
				for _, pr := range s.bounds(t, o, body) {
					changed := maps.Clone(body)
					changed[pr.field] = pr.value
					rep := h.do(build(o, exampleRequest{path: r.path, query: r.query, body: changed, idem: r.idem}, key))
					s.checkAnswer(t, o, rep)
					var p Problem
					_ = json.Unmarshal(rep.body, &p)
					refused := rep.status == http.StatusBadRequest && p.Code == ledger.CodeValidation && p.Field == pr.field
					if refused == pr.valid {
						t.Errorf("example %q with %s = %s: answered %s; the document says it is %s", r.name, pr.field, brief(pr.value), rep,
							map[bool]string{true: "valid", false: "invalid"}[pr.valid])
					}
				}
			}

			// What the document says about keys, roles and Idempotency-Key.
			first := reqs[0]
			if secured {
				rep := h.do(build(o, first, ""))
				if rep.status != http.StatusUnauthorized {
					t.Errorf("without a key: %s, want 401", rep)
				}
				s.checkAnswer(t, o, rep)
				posReq := build(o, first, w.posA)
				posReq.idem, posReq.body = "", nil // refused before anything is written
				rep = h.do(posReq)
				s.checkAnswer(t, o, rep)
				var p Problem
				_ = json.Unmarshal(rep.body, &p)
				if admitted := rep.status != http.StatusUnauthorized && p.Code != ledger.CodeForbidden; slices.Contains(roles, "pos") != admitted ||
					!admitted && p.Code != ledger.CodeForbidden {
					t.Errorf("x-pointd-roles %v, and a pos key is answered %s", roles, rep)
				}
			}
			if first.idem {
				rq := build(o, first, key)
				rq.idem = ""
				rep := h.do(rq)
				if rep.status != http.StatusBadRequest || !strings.Contains(string(rep.body), codeIdemKeyMissing) {
					t.Errorf("without an Idempotency-Key: %s, want 400 %s", rep, codeIdemKeyMissing)
				}
				s.checkAnswer(t, o, rep)
			}
		})
	}
	if ran < 40 {
		t.Errorf("only %d examples ran", ran)
	}
}

// security reports whether the operation needs a key (no empty alternative
// in its security requirements) and the roles it admits.
func (s *spec) security(t *testing.T, o operation) (bool, []string) {
	t.Helper()
	reqs, ok := o.m["security"].([]any)
	if !ok {
		reqs = s.root["security"].([]any)
	}
	secured := len(reqs) > 0
	for _, r := range reqs {
		if len(r.(map[string]any)) == 0 {
			secured = false
		}
	}
	var roles []string
	if rs, ok := o.m["x-pointd-roles"].([]any); ok {
		for _, r := range rs {
			roles = append(roles, r.(string))
		}
	} else if secured {
		t.Errorf("%s needs a key but has no x-pointd-roles", o)
	}
	return secured, roles
}

// bounds returns, for each property of body, values just outside its
// documented minimum, maximum and maxLength, which must be refused, and the
// bounds themselves, which must not be (they may be refused for another
// reason: not enough points, a receipt already used); and a name the schema
// lacks, which must be refused.
func (s *spec) bounds(t *testing.T, o operation, body map[string]any) []probe {
	t.Helper()
	media := s.obj(t, s.obj(t, s.obj(t, o.m["requestBody"])["content"])["application/json"])
	props := s.obj(t, s.obj(t, media["schema"])["properties"])
	out := []probe{{"undocumented_name", 1, false}}
	for _, field := range slices.Sorted(maps.Keys(body)) {
		ps := s.obj(t, props[field])
		if min, ok := ps["minimum"].(float64); ok {
			out = append(out, probe{field, int64(min) - 1, false}, probe{field, int64(min), true})
		}
		if max, ok := ps["maximum"].(float64); ok {
			out = append(out, probe{field, int64(max) + 1, false}, probe{field, int64(max), true})
		}
		if max, ok := ps["maxLength"].(float64); ok {
			out = append(out, probe{field, strings.Repeat("1", int(max)+1), false}, probe{field, strings.Repeat("1", int(max)), true})
		}
	}
	return out
}

type probe struct {
	field string
	value any
	valid bool
}

func (s *spec) documentsHeader(t *testing.T, o operation, status int, name string) bool {
	resp := s.obj(t, s.obj(t, o.m["responses"])[strconv.Itoa(status)])
	hs, _ := resp["headers"].(map[string]any)
	_, ok := hs[name]
	return ok
}

// sameShape checks an answer against its example: the same top-level names
// (an example must show what the handler really answers, no more, no less),
// and for problems the same code and field.
func sameShape(t *testing.T, what string, got, example any) {
	t.Helper()
	g, ok1 := got.(map[string]any)
	e, ok2 := example.(map[string]any)
	if !ok1 || !ok2 {
		return
	}
	// A problem has a code and a type; a member code answer has a code only.
	_, hasCode := e["code"]
	_, hasType := e["type"]
	if hasCode && hasType {
		if g["code"] != e["code"] || g["field"] != e["field"] {
			t.Errorf("%s: answered code %v field %v; the example shows code %v field %v", what, g["code"], g["field"], e["code"], e["field"])
		}
		return
	}
	var gk, ek []string
	for k := range g {
		gk = append(gk, k)
	}
	for k := range e {
		ek = append(ek, k)
	}
	sort.Strings(gk)
	sort.Strings(ek)
	if !slices.Equal(gk, ek) {
		t.Errorf("%s: the answer has the names %v; the example shows %v", what, gk, ek)
	}
}

// --- 3. The document itself ---------------------------------------------

func TestOpenAPIDocument(t *testing.T) {
	s := loadSpec(t)
	if v, _ := s.root["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", v)
	}
	info := s.obj(t, s.root["info"])
	if info["title"] == nil || info["version"] == nil {
		t.Error("info wants a title and a version")
	}
	if servers, _ := s.root["servers"].([]any); len(servers) != 1 || s.obj(t, servers[0])["url"] != "/" {
		t.Errorf("servers %v, want one, relative: /", s.root["servers"])
	}
	bearer, _ := s.lookup("#/components/securitySchemes/apiKey")
	if b, _ := bearer.(map[string]any); b["type"] != "http" || b["scheme"] != "bearer" ||
		!strings.Contains(fmt.Sprint(b["bearerFormat"]), "pd_live_") || !strings.Contains(fmt.Sprint(b["bearerFormat"]), "pd_test_") {
		t.Errorf("security scheme apiKey %v", bearer)
	}

	// Every $ref resolves.
	var walk func(ptr string, n any)
	walk = func(ptr string, n any) {
		switch v := n.(type) {
		case map[string]any:
			if ref, ok := v["$ref"]; ok {
				if r, ok := ref.(string); !ok || !strings.HasPrefix(r, "#/") {
					t.Errorf("%s: $ref %v is not local", ptr, ref)
				} else if _, ok := s.lookup(r); !ok {
					t.Errorf("%s: $ref %s resolves to nothing", ptr, r)
				}
			}
			for k, x := range v {
				walk(ptr+"/"+escapePointer(k), x)
			}
		case []any:
			for i, x := range v {
				walk(ptr+"/"+strconv.Itoa(i), x)
			}
		}
	}
	walk("", s.root)

	ids := map[string]bool{}
	pathParam := regexp.MustCompile(`\{([^}]+)\}`)
	for _, o := range s.operations(t) {
		id, _ := o.m["operationId"].(string)
		if id == "" || ids[id] {
			t.Errorf("%s: operationId %q missing or not unique", o, id)
		}
		ids[id] = true
		if sum, _ := o.m["summary"].(string); sum == "" {
			t.Errorf("%s: no summary", o)
		}
		responses := s.obj(t, o.m["responses"])
		if len(responses) == 0 {
			t.Errorf("%s: no responses", o)
		}
		success := 0
		for code, r := range responses {
			resp := s.obj(t, r)
			if d, _ := resp["description"].(string); d == "" {
				t.Errorf("%s %s: no description", o, code)
			}
			if code[0] == '2' {
				success++
			}
			for mt, media := range s.obj(t, resp["content"]) {
				m := s.obj(t, media)
				if code[0] != '2' && mt != problemContentType {
					t.Errorf("%s %s: errors are %s, not %s", o, code, problemContentType, mt)
				}
				exs, _ := m["examples"].(map[string]any)
				if len(exs) == 0 && o.path != "/v1/openapi.json" {
					t.Errorf("%s %s: no examples", o, code)
				}
				for name, e := range exs {
					for _, err := range validate(s, m["schema"], s.obj(t, e)["value"], "") {
						t.Errorf("%s %s: answer example %q: %s", o, code, name, err)
					}
				}
			}
		}
		if success != 1 {
			t.Errorf("%s: %d success responses, want 1", o, success)
		}

		// Path parameters: the template's and the declared ones agree.
		declared := map[string]bool{}
		params, _ := o.m["parameters"].([]any)
		for _, p := range params {
			pm := s.obj(t, p)
			if pm["in"] == "path" {
				declared[pm["name"].(string)] = true
				if pm["required"] != true {
					t.Errorf("%s: path parameter %v must be required", o, pm["name"])
				}
			}
		}
		for _, m := range pathParam.FindAllStringSubmatch(o.path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s: path parameter %s is not declared", o, m[1])
			}
			delete(declared, m[1])
		}
		for name := range declared {
			t.Errorf("%s: declares path parameter %s that the path lacks", o, name)
		}

		// Request bodies: closed objects; examples that succeed validate.
		if rb, ok := o.m["requestBody"]; ok {
			media := s.obj(t, s.obj(t, s.obj(t, rb)["content"])["application/json"])
			schema := s.obj(t, media["schema"])
			if schema["additionalProperties"] != false {
				t.Errorf("%s: the request body schema must have additionalProperties: false", o)
			}
			for _, r := range s.requests(t, o) {
				if r.body == nil {
					continue
				}
				if st, _ := s.answerFor(t, o, r.name); st/100 == 2 {
					for _, err := range validate(s, media["schema"], r.body, "") {
						t.Errorf("%s: request example %q: %s", o, r.name, err)
					}
				}
			}
		}
	}
}

// --- 4. Serving it ---------------------------------------------------------

func TestOpenAPIIsServed(t *testing.T) {
	h := newHarness(t)
	rep := h.get("/v1/openapi.json", "") // no key needed
	if rep.status != http.StatusOK || rep.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/openapi.json: %d %q", rep.status, rep.header.Get("Content-Type"))
	}
	if !bytes.Equal(rep.body, openapiJSON) {
		t.Fatal("GET /v1/openapi.json does not answer the embedded document byte for byte")
	}
	etag := rep.header.Get("ETag")
	rep = h.do(req{method: http.MethodGet, path: "/v1/openapi.json", header: map[string]string{"If-None-Match": etag}})
	if etag == "" || rep.status != http.StatusNotModified {
		t.Errorf("a revalidation with ETag %q answered %d", etag, rep.status)
	}
}

// --- The JSON Schema subset ---------------------------------------------

// schemaKeywords are the keywords validate understands or may ignore (the
// annotations). Anything else in a schema fails validation, so that the
// document cannot rely on a rule nobody checks.
var schemaKeywords = map[string]bool{
	"$ref": true, "type": true, "enum": true, "const": true, "properties": true, "required": true,
	"additionalProperties": true, "items": true, "minItems": true, "maxItems": true, "minimum": true,
	"maximum": true, "minLength": true, "maxLength": true, "pattern": true, "allOf": true, "anyOf": true,
	"oneOf": true, "not": true,
	// annotations
	"description": true, "format": true, "default": true, "example": true, "examples": true, "title": true,
}

// validate checks v against schema (a JSON Schema 2020-12 subset: the one
// the document uses) and returns what is wrong, each prefixed with where.
func validate(s *spec, schema, v any, at string) []string {
	where := at
	if where == "" {
		where = "(body)"
	}
	if b, ok := schema.(bool); ok {
		if !b {
			return []string{where + ": not allowed"}
		}
		return nil
	}
	sch, ok := schema.(map[string]any)
	if !ok {
		return []string{fmt.Sprintf("%s: schema %v is not an object", where, schema)}
	}
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, where+": "+fmt.Sprintf(format, args...)) }
	for k := range sch {
		if !schemaKeywords[k] {
			fail("unsupported schema keyword %q", k)
		}
	}
	if ref, ok := sch["$ref"].(string); ok {
		target, found := s.lookup(ref)
		if !found {
			fail("$ref %s resolves to nothing", ref)
		} else {
			errs = append(errs, validate(s, target, v, at)...)
		}
	}
	if t, ok := sch["type"]; ok {
		var types []string
		switch tt := t.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, x := range tt {
				types = append(types, x.(string))
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return hasType(v, t) }) {
			fail("%s is not of type %v", brief(v), types)
			return errs // the rest would only repeat it
		}
	}
	if e, ok := sch["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return reflect.DeepEqual(x, v) }) {
		fail("%s is not one of %v", brief(v), e)
	}
	if c, ok := sch["const"]; ok && !reflect.DeepEqual(c, v) {
		fail("%s is not %v", brief(v), c)
	}
	if n, ok := v.(float64); ok {
		if min, ok := sch["minimum"].(float64); ok && n < min {
			fail("%v is less than %v", n, min)
		}
		if max, ok := sch["maximum"].(float64); ok && n > max {
			fail("%v is more than %v", n, max)
		}
	}
	if str, ok := v.(string); ok {
		n := float64(utf8.RuneCountInString(str))
		if min, ok := sch["minLength"].(float64); ok && n < min {
			fail("%q is shorter than %v", str, min)
		}
		if max, ok := sch["maxLength"].(float64); ok && n > max {
			fail("%q is longer than %v", str, max)
		}
		if p, ok := sch["pattern"].(string); ok {
			re, err := regexp.Compile(p)
			if err != nil {
				fail("pattern %q: %v", p, err)
			} else if !re.MatchString(str) {
				fail("%q does not match %s", str, p)
			}
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := sch["properties"].(map[string]any)
		for _, r := range asSlice(sch["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				fail("%q is required", r)
			}
		}
		names := make([]string, 0, len(obj))
		for k := range obj {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if ps, ok := props[k]; ok {
				errs = append(errs, validate(s, ps, obj[k], at+"/"+k)...)
			} else if ap, ok := sch["additionalProperties"]; ok {
				if ap == false {
					fail("%q is not a documented property", k)
				} else {
					errs = append(errs, validate(s, ap, obj[k], at+"/"+k)...)
				}
			}
		}
	}
	if arr, ok := v.([]any); ok {
		if min, ok := sch["minItems"].(float64); ok && float64(len(arr)) < min {
			fail("%d items, fewer than %v", len(arr), min)
		}
		if max, ok := sch["maxItems"].(float64); ok && float64(len(arr)) > max {
			fail("%d items, more than %v", len(arr), max)
		}
		if items, ok := sch["items"]; ok {
			for i, x := range arr {
				errs = append(errs, validate(s, items, x, fmt.Sprintf("%s/%d", at, i))...)
			}
		}
	}
	for _, sub := range asSlice(sch["allOf"]) {
		errs = append(errs, validate(s, sub, v, at)...)
	}
	if anyOf := asSlice(sch["anyOf"]); len(anyOf) > 0 {
		if !slices.ContainsFunc(anyOf, func(sub any) bool { return len(validate(s, sub, v, at)) == 0 }) {
			fail("matches none of anyOf")
		}
	}
	if one := asSlice(sch["oneOf"]); len(one) > 0 {
		n := 0
		for _, sub := range one {
			if len(validate(s, sub, v, at)) == 0 {
				n++
			}
		}
		if n != 1 {
			fail("matches %d of oneOf, want exactly 1", n)
		}
	}
	if not, ok := sch["not"]; ok && len(validate(s, not, v, at)) == 0 {
		fail("%s matches what \"not\" forbids", brief(v))
	}
	return errs
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func hasType(v any, t string) bool {
	switch t {
	case "null":
		return v == nil
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		n, ok := v.(float64)
		return ok && n == math.Trunc(n) && !math.IsInf(n, 0)
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	}
	return false
}

func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

func TestSchemaValidator(t *testing.T) {
	s := &spec{root: map[string]any{}}
	mustJSON := func(src string) any {
		var v any
		if err := json.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return v
	}
	s.root = mustJSON(`{"components": {"schemas": {
		"Id": {"type": "string", "minLength": 1, "maxLength": 4, "pattern": "^[a-z]+$"},
		"Thing": {"type": "object", "additionalProperties": false, "required": ["id"],
		          "properties": {"id": {"$ref": "#/components/schemas/Id"}, "n": {"type": ["integer", "null"], "minimum": -2, "maximum": 5},
		                         "kind": {"enum": ["a", "b"]}, "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}}}}
	}}}`).(map[string]any)
	for _, c := range []struct {
		schema, value string
		ok            bool
	}{
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab"}`, true},
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": null, "kind": "b", "tags": ["x", "y"]}`, true},
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": 5}`, true},
		{`{"$ref": "#/components/schemas/Thing"}`, `{}`, false},                                  // required
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "x": 1}`, false},                // additionalProperties
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "AB"}`, false},                        // pattern
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": ""}`, false},                          // minLength
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "abcde"}`, false},                     // maxLength
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": 6}`, false},                // maximum
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": -3}`, false},               // minimum
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": 1.5}`, false},              // integer
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "n": "1"}`, false},              // type
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "kind": "c"}`, false},           // enum
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "tags": [1]}`, false},           // items
		{`{"$ref": "#/components/schemas/Thing"}`, `{"id": "ab", "tags": ["a","b","c"]}`, false}, // maxItems
		{`{"$ref": "#/components/schemas/Missing"}`, `{}`, false},
		{`{"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}`, `{"a": 1}`, true},
		{`{"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}`, `{"a": 1, "b": 2}`, false},
		{`{"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}`, `{}`, false},
		{`{"anyOf": [{"type": "string"}, {"type": "boolean"}]}`, `true`, true},
		{`{"anyOf": [{"type": "string"}, {"type": "boolean"}]}`, `1`, false},
		{`{"allOf": [{"type": "integer"}, {"minimum": 3}]}`, `2`, false},
		{`{"not": {"const": 0}}`, `0`, false},
		{`{"not": {"const": 0}}`, `7`, true},
		{`{"const": 404}`, `404`, true},
		{`{"type": "string", "frobnicate": 1}`, `"x"`, false}, // an unknown keyword is refused
		{`{"type": "string", "format": "date-time", "description": "d"}`, `"anything"`, true},
	} {
		errs := validate(s, mustJSON(c.schema), mustJSON(c.value), "")
		if (len(errs) == 0) != c.ok {
			t.Errorf("schema %s, value %s: errors %v, want ok=%v", c.schema, c.value, errs, c.ok)
		}
	}
}
