package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/cache"
	"github.com/pointd/pointd/internal/cache/redistest"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/redis/go-redis/v9"
)

func withShared(sh *cache.Shared) option { return func(c *harnessConfig) { c.shared = sh } }

// withCounting makes the server and the writer see the store through cs.
func withCounting(cs *countingStore) option {
	return func(c *harnessConfig) {
		c.wrap = func(s testStore) testStore {
			cs.s = s.(interface {
				testStore
				notice.Store
			})
			return cs
		}
	}
}

// startShared is one instance's view of the test's Redis.
func startShared(t *testing.T, rdb redis.UniversalClient, prefix string) *cache.Shared {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sh := cache.NewShared(rdb, prefix, nil)
	if err := sh.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return sh
}

// publish creates a notice with the admin key and wants a 201.
func (h *harness) publish(body map[string]any) notice.Notice {
	h.t.Helper()
	return want[notice.Notice](h.t, h.post("/v1/notices", h.admin, h.idem(), body), http.StatusCreated)
}

func (h *harness) appKey() string {
	h.t.Helper()
	return h.makeKey(auth.Key{Role: auth.RoleApp, Name: "member app"}, h.cfg.mode)
}

func (h *harness) badges(key, memberID string) badgesResponse {
	h.t.Helper()
	r := h.get("/v1/members/"+memberID+"/badges", key)
	b := want[badgesResponse](h.t, r, http.StatusOK)
	if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, max-age=") {
		h.t.Fatalf("badges Cache-Control %q, want private", cc)
	}
	if r.header.Get(headerPollInterval) == "" {
		h.t.Fatal("badges without a poll hint")
	}
	return b
}

// After a 201, the same member's next balance read reflects it, although
// the balance was cached just before.
func TestReadYourWritesOnOneInstance(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) {
			h := newHarness(t, withBackend(b))
			w := h.newWorld()
			m := w.member.ID
			for i := range 10 {
				before := h.balance(m) // cached now
				if again := h.balance(m); again != before {
					t.Fatalf("two reads differ: %+v %+v", before, again)
				}
				res := h.earn(w.posA, w.storeA, m, 10_000)
				got := h.balance(m)
				if got.Balance != res.Balance || got.Balance != before.Balance+150 {
					t.Fatalf("round %d: balance read %+v after an earn answered %d (was %d)", i, got, res.Balance, before.Balance)
				}
			}
			// A hold changes held and available: the next read shows it too.
			hold := want[opResponse](t, h.post("/v1/holds", w.posA, h.idem(), map[string]any{
				"member_id": m, "store_id": w.storeA, "points": 100}), http.StatusCreated)
			if got := h.balance(m); got.Held != 100 || got.Available != hold.Available {
				t.Fatalf("balance after a hold %+v, the hold answered %+v", got, hold)
			}
		})
	}
}

// Two pointd instances on one PostgreSQL and one Redis: a write on either is
// seen by the next read on the other, every time.
func TestReadYourWritesAcrossInstances(t *testing.T) {
	rdb, prefix := redistest.New(t)
	a := newHarness(t, withBackend(onPostgres), withShared(startShared(t, rdb, prefix)))
	b := a.twin(startShared(t, rdb, prefix))
	w := a.newWorld()
	m := w.member.ID
	a.balance(m)
	b.balance(m) // both have it cached (in Redis)
	for i := range 10 {
		writer, reader := a, b
		if i%2 == 1 {
			writer, reader = b, a
		}
		res := writer.earn(w.posA, w.storeA, m, 10_000)
		if got := reader.balance(m); got.Balance != res.Balance {
			t.Fatalf("round %d: the other instance reads %+v after a 201 with balance %d", i, got, res.Balance)
		}
		if got := writer.balance(m); got.Balance != res.Balance {
			t.Fatalf("round %d: the writing instance reads %+v after a 201 with balance %d", i, got, res.Balance)
		}
	}
	// Notices published on one instance are listed by the other once the
	// publish message arrives.
	n := a.publish(map[string]any{"title": "Hello", "body": "from A"})
	waitUntil(t, "instance B lists the notice published on A", func() bool {
		p := want[page[notice.Notice]](t, b.get("/v1/notices", b.admin), http.StatusOK)
		return len(p.Items) == 1 && p.Items[0].ID == n.ID
	})
}

// twin starts a second pointd instance on h's PostgreSQL schema: its own
// connections, writer, caches and HTTP server.
func (h *harness) twin(sh *cache.Shared) *harness {
	t := h.t
	t.Helper()
	db, err := postgres.Open(h.ctx, h.dsn, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	wr := ledger.NewWriter(db, ledger.WriterConfig{})
	t.Cleanup(wr.Close)
	s := New(Config{Mode: h.cfg.mode, Shared: sh}, db, db, wr, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	c := *h
	c.srv, c.writer, c.api = srv, wr, s
	return &c
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNoticeValidation(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	ok := map[string]any{"title": "T", "body": "B"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	cases := []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"a title is required", with("title", nil), 400, "validation_failed", "title"},
		{"a blank title is refused", with("title", "  "), 400, "validation_failed", "title"},
		{"a title of over 200 bytes is refused", with("title", strings.Repeat("x", 201)), 400, "validation_failed", "title"},
		{"a title with a line break is refused", with("title", "a\nb"), 400, "validation_failed", "title"},
		{"a body is required", with("body", nil), 400, "validation_failed", "body"},
		{"a body of over 20000 bytes is refused", with("body", strings.Repeat("x", 20_001)), 400, "validation_failed", "body"},
		{"a body with a control character is refused", with("body", "a\x01b"), 400, "validation_failed", "body"},
		{"an http image URL is refused", with("image_url", "http://example.com/a.png"), 400, "validation_failed", "image_url"},
		{"a relative image URL is refused", with("image_url", "/a.png"), 400, "validation_failed", "image_url"},
		{"an image URL with credentials is refused", with("image_url", "https://u:p@example.com/a.png"), 400, "validation_failed", "image_url"},
		{"a negative ramp is refused", with("ramp_seconds", -1), 400, "validation_failed", "ramp_seconds"},
		{"a ramp of over a day is refused", with("ramp_seconds", 86_401), 400, "validation_failed", "ramp_seconds"},
		{"a fractional ramp is refused", with("ramp_seconds", 1.5), 400, "validation_failed", "ramp_seconds"},
		{"publish_at must be RFC 3339", with("publish_at", "tomorrow"), 400, "validation_failed", "publish_at"},
		{"ends_at must be after publish_at", with("publish_at", future, "ends_at", future), 400, "validation_failed", "ends_at"},
		{"ends_at in the past is refused", with("ends_at", "2020-01-01T00:00:00Z"), 400, "validation_failed", "ends_at"},
		{"an unknown audience is refused", with("audience", "vip"), 400, "validation_failed", "audience"},
		{"audience merchant needs a merchant", with("audience", "merchant"), 400, "validation_failed", "merchant_id"},
		{"audience all takes no merchant", with("audience", "all", "merchant_id", w.merchantA), 400, "validation_failed", "merchant_id"},
		{"an unknown merchant is not found", with("merchant_id", "nope"), 404, "merchant_not_found", "merchant_id"},
		{"pinned must be a boolean", with("pinned", "yes"), 400, "validation_failed", "pinned"},
		{"unknown fields are refused", with("colour", "red"), 400, "validation_failed", "colour"},
		{"a body that is not an object is refused", "[1]", 400, "malformed_json", "-"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			problem(t, h.at(t).post("/v1/notices", h.admin, h.idem(), c.body), c.status, c.code, c.field)
		})
	}
	t.Run("only admin keys publish", func(t *testing.T) {
		problem(t, h.post("/v1/notices", w.posA, h.idem(), ok), 403, "forbidden", "-")
		problem(t, h.post("/v1/notices", h.appKey(), h.idem(), ok), 403, "forbidden", "-")
	})
	t.Run("an Idempotency-Key is required", func(t *testing.T) {
		problem(t, h.post("/v1/notices", h.admin, "", ok), 400, "idempotency_key_missing", "-")
	})
	t.Run("nothing refused was published", func(t *testing.T) {
		p := want[page[notice.Notice]](t, h.get("/v1/notices", h.admin), http.StatusOK)
		if len(p.Items) != 0 {
			t.Fatalf("refused notices are listed: %+v", p.Items)
		}
	})
	t.Run("a retry with the same key is a replay; another body is refused", func(t *testing.T) {
		key := h.idem()
		first := want[notice.Notice](t, h.post("/v1/notices", h.admin, key, ok), http.StatusCreated)
		r := h.post("/v1/notices", h.admin, key, ok)
		again := want[notice.Notice](t, r, http.StatusCreated)
		if again.ID != first.ID || r.header.Get(headerReplayed) != "true" {
			t.Fatalf("replay %+v (%q), first %+v", again, r.header.Get(headerReplayed), first)
		}
		problem(t, h.post("/v1/notices", h.admin, key, with("title", "other")), 422, "idempotency_key_reused", "-")
	})
}

func TestNoticeListOrderPaginationAndConditionalGets(t *testing.T) {
	h := newHarness(t)
	app := h.appKey()
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	old := h.publish(map[string]any{"title": "old", "body": "b", "publish_at": at(0)})
	mid := h.publish(map[string]any{"title": "mid", "body": "b", "publish_at": at(time.Minute)})
	pin := h.publish(map[string]any{"title": "pinned", "body": "b", "publish_at": at(0), "pinned": true})
	recent := h.publish(map[string]any{"title": "recent", "body": "b", "publish_at": at(2 * time.Minute),
		"image_url": "https://cdn.example.com/n.png"})
	later := h.publish(map[string]any{"title": "scheduled", "body": "b", "publish_at": time.Now().Add(time.Hour).Format(time.RFC3339)})

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		q := url.Values{"limit": {"2"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		p := want[page[notice.Notice]](t, h.get("/v1/notices?"+q.Encode(), app), http.StatusOK)
		for _, n := range p.Items {
			got = append(got, n.Title)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
		if pages > 10 {
			t.Fatal("pages do not end")
		}
	}
	if w := []string{"pinned", "recent", "mid", "old"}; fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("listed %v, want %v (pinned first, then newest; scheduled not shown)", got, w)
	}
	problem(t, h.get("/v1/notices/"+later.ID, app), 404, notice.CodeNoticeNotFound, "-")
	one := want[notice.Notice](t, h.get("/v1/notices/"+recent.ID, app), http.StatusOK)
	if one.ImageURL != "https://cdn.example.com/n.png" || one.Title != "recent" {
		t.Fatalf("one notice %+v", one)
	}
	for _, bad := range []string{"limit=0", "limit=101", "limit=x", "cursor=zz", "cursor=" + h.api.makeCursor("audit", 5)} {
		problem(t, h.get("/v1/notices?"+bad, app), 400, "validation_failed", "-")
	}
	_, _, _ = old, mid, pin

	t.Run("answers carry a strong ETag and public caching; If-None-Match answers 304", func(t *testing.T) {
		for _, path := range []string{"/v1/notices", "/v1/notices/" + recent.ID} {
			r := h.get(path, app)
			etag := r.header.Get("ETag")
			if !strings.HasPrefix(etag, `"`) || len(etag) < 10 {
				t.Fatalf("%s: ETag %q, want a strong one", path, etag)
			}
			if cc := r.header.Get("Cache-Control"); !strings.HasPrefix(cc, "public, max-age=") || !strings.Contains(cc, "stale-while-revalidate=") {
				t.Fatalf("%s: Cache-Control %q", path, cc)
			}
			for _, inm := range []string{etag, "W/" + etag, `"x", ` + etag, "*"} {
				nr := h.do(req{method: "GET", path: path, key: app, header: map[string]string{"If-None-Match": inm}})
				if nr.status != http.StatusNotModified || len(nr.body) != 0 || nr.header.Get("ETag") != etag {
					t.Fatalf("%s If-None-Match %s: %d %q etag %q", path, inm, nr.status, nr.body, nr.header.Get("ETag"))
				}
			}
			nr := h.do(req{method: "GET", path: path, key: app, header: map[string]string{"If-None-Match": `"other"`}})
			if nr.status != http.StatusOK || string(nr.body) != string(r.body) {
				t.Fatalf("%s: a stale If-None-Match got %d", path, nr.status)
			}
		}
		// A new notice changes the list, and with it the ETag.
		r := h.get("/v1/notices", app)
		h.publish(map[string]any{"title": "newest", "body": "b"})
		nr := h.do(req{method: "GET", path: "/v1/notices", key: app, header: map[string]string{"If-None-Match": r.header.Get("ETag")}})
		p := want[page[notice.Notice]](t, nr, http.StatusOK)
		if nr.header.Get("ETag") == r.header.Get("ETag") || len(p.Items) == 0 || p.Items[1].Title != "newest" {
			t.Fatalf("after a publish: %d, ETag %q (was %q), items %+v", nr.status, nr.header.Get("ETag"), r.header.Get("ETag"), p.Items)
		}
	})
	t.Run("every key role reads notices", func(t *testing.T) {
		for _, role := range []auth.Role{auth.RoleViewer, auth.RolePOS, auth.RoleApp, auth.RoleAdmin} {
			k := h.makeKey(auth.Key{Role: role}, h.cfg.mode)
			want[page[notice.Notice]](t, h.get("/v1/notices", k), http.StatusOK)
		}
		problem(t, h.get("/v1/notices", ""), 401, "unauthorized", "-")
	})
}

func TestNoticeAudience(t *testing.T) {
	h := newHarness(t)
	w := h.newWorld()
	app := h.appKey()
	h.earn(w.posA, w.storeA, w.member.ID, 1000) // the member belongs to merchant A now
	stranger := h.createMember("+15550001111", "Bo")
	all := h.publish(map[string]any{"title": "to all", "body": "b"})
	toA := h.publish(map[string]any{"title": "to A's members", "body": "b", "merchant_id": w.merchantA})
	toB := h.publish(map[string]any{"title": "to B's members", "body": "b", "audience": "merchant", "merchant_id": w.merchantB})
	if toA.Audience != notice.AudienceMerchant || toA.MerchantID != w.merchantA {
		t.Fatalf("notice to A: %+v", toA)
	}
	ids := func(path string) string {
		p := want[page[notice.Notice]](t, h.get(path, app), http.StatusOK)
		var s []string
		for _, n := range p.Items {
			s = append(s, n.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids("/v1/notices"); got != all.ID {
		t.Errorf("the general list shows %s, want only the notice to all", got)
	}
	if got := ids("/v1/notices?merchant_id=" + w.merchantA); got != toA.ID {
		t.Errorf("merchant A's list shows %s, want only A's notice", got)
	}
	if got := ids("/v1/notices?merchant_id=" + w.merchantB); got != toB.ID {
		t.Errorf("merchant B's list shows %s", got)
	}
	if b := h.badges(app, w.member.ID); b.Notices.New != 2 || !b.New {
		t.Errorf("A's member has %+v, want 2 new notices (to all, to A's members)", b)
	}
	if b := h.badges(app, stranger.ID); b.Notices.New != 1 {
		t.Errorf("a member of no merchant has %+v, want 1 new notice (to all)", b)
	}
	// Earning at B makes the member one of B's: the badge follows at once.
	h.earn(w.posB, w.storeB, w.member.ID, 1000)
	if b := h.badges(app, w.member.ID); b.Notices.New != 3 {
		t.Errorf("after an earn at B the member has %+v, want 3 new notices", b)
	}
}

func TestBadges(t *testing.T) {
	cs := &countingStore{}
	h := newHarness(t, withCounting(cs))
	w := h.newWorld()
	app := h.appKey()
	m := w.member.ID
	h.earn(w.posA, w.storeA, m, 100_000)
	want[opResponse](t, h.post("/v1/holds", w.posA, h.idem(), map[string]any{
		"member_id": m, "store_id": w.storeA, "points": 100, "expires_in_seconds": 120}), http.StatusCreated)
	h.publish(map[string]any{"title": "one", "body": "b"})
	h.publish(map[string]any{"title": "two", "body": "b", "merchant_id": w.merchantA})

	b := h.badges(app, m)
	if !b.New || b.Notices.New != 2 || b.HoldsExpiring.Count != 1 || b.HoldsExpiring.Points != 100 ||
		b.PointsExpiring.Points != 0 || b.SeenAt != nil || b.PollAfter != 60 {
		t.Fatalf("badges %+v", b)
	}

	t.Run("a warm badge read does not touch the store", func(t *testing.T) {
		cs.calls()
		for range 100 {
			h.badges(app, m)
			want[page[notice.Notice]](t, h.get("/v1/notices", app), http.StatusOK)
		}
		if c := cs.calls(); total(c) != 0 {
			t.Fatalf("100 badge and notice reads made store calls: %v", c)
		}
	})

	t.Run("seen clears what is new and is kept", func(t *testing.T) {
		r := h.post("/v1/members/"+m+"/badges/seen", app, "", nil)
		s := want[badgesResponse](t, r, http.StatusOK)
		if s.New || s.Notices.New != 0 || s.SeenAt == nil || s.HoldsExpiring.Count != 1 {
			t.Fatalf("after seen: %+v (the hold is still about to expire, but not new)", s)
		}
		if b := h.badges(app, m); b.New || b.SeenAt == nil || !b.SeenAt.Equal(*s.SeenAt) {
			t.Fatalf("after seen, badges %+v", b)
		}
		h.api.FlushSeen(h.ctx)
		at, err := cs.s.BadgesSeen(h.ctx, m)
		if err != nil || !at.Equal(*s.SeenAt) {
			t.Fatalf("stored seen time %v (%v), answered %v", at, err, s.SeenAt)
		}
	})

	t.Run("a new notice shows in the next badge read", func(t *testing.T) {
		h.publish(map[string]any{"title": "three", "body": "b"})
		if b := h.badges(app, m); !b.New || b.Notices.New != 1 {
			t.Fatalf("after a publish: %+v", b)
		}
	})

	t.Run("roles and ids", func(t *testing.T) {
		problem(t, h.get("/v1/members/"+m+"/badges", w.posA), 403, "forbidden", "-")
		problem(t, h.get("/v1/members/nobody/badges", app), 404, "member_not_found", "-")
		problem(t, h.post("/v1/members/nobody/badges/seen", app, "", nil), 404, "member_not_found", "-")
		problem(t, h.post("/v1/members/"+m+"/badges/seen", app, "", map[string]any{"at": 1}), 400, "validation_failed", "at")
	})
}

// A notice with a ramp appears for members spread over the ramp: right
// after publishing a one-day ramp, almost nobody sees it yet.
func TestBadgeRampSpreadsMembers(t *testing.T) {
	h := newHarness(t)
	app := h.appKey()
	var members []string
	for i := range 40 {
		members = append(members, h.createMember(fmt.Sprintf("+1555%07d", 9_000_000+i), "M").ID)
	}
	n := h.publish(map[string]any{"title": "big news", "body": "b", "ramp_seconds": 86_400})
	seeing := 0
	for _, m := range members {
		b := h.badges(app, m)
		visible := !n.VisibleAt(m).After(time.Now())
		if b.Notices.New == 1 {
			seeing++
		}
		if (b.Notices.New == 1) != visible && time.Since(n.VisibleAt(m)).Abs() > time.Second {
			t.Errorf("member %s: badge %+v, visible at %v", m, b.Notices, n.VisibleAt(m))
		}
		if b.Notices.New == 0 && b.PollAfter > 60 {
			t.Errorf("poll hint %d", b.PollAfter)
		}
	}
	if seeing > 2 {
		t.Errorf("%d of %d members see a one-day ramped notice seconds after it was published", seeing, len(members))
	}
}

// The notice stampede: 10,000 concurrent notice and badge reads right
// after a publish cost at most one database query per cached item.
func TestStampedeAfterPublish(t *testing.T) {
	for _, b := range []backend{onSQLite, onPostgres} {
		t.Run(string(b), func(t *testing.T) { stampede(t, withBackend(b)) })
	}
	t.Run("PostgreSQL and Redis", func(t *testing.T) {
		rdb, prefix := redistest.New(t)
		stampede(t, withBackend(onPostgres), withShared(startShared(t, rdb, prefix)))
	})
}

func stampede(t *testing.T, opts ...option) {
	cs := &countingStore{}
	h := newHarness(t, append(opts, withCounting(cs))...)
	w := h.newWorld()
	app := h.appKey()
	const members = 50
	ids := []string{w.member.ID}
	for i := 1; i < members; i++ {
		ids = append(ids, h.createMember(fmt.Sprintf("+1556%07d", i), "M").ID)
	}
	h.get("/v1/notices", app) // the board's first load
	n := h.publish(map[string]any{"title": "launch", "body": "b"})
	cs.calls()
	handler := h.api.Handler()
	const reads = 10_000
	var wg sync.WaitGroup
	start := make(chan struct{})
	fails := make(chan string, reads)
	for i := range reads {
		path := "/v1/members/" + ids[i%members] + "/badges"
		switch i % 3 {
		case 1:
			path = "/v1/notices"
		case 2:
			path = "/v1/notices/" + n.ID
		}
		wg.Go(func() {
			<-start
			r := httptest.NewRequest("GET", path, nil)
			r.Header.Set("Authorization", "Bearer "+app)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			if rec.Code != 200 {
				fails <- fmt.Sprintf("%s: %d %s", path, rec.Code, rec.Body)
			}
		})
	}
	close(start)
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Fatal(f)
	}
	c := cs.calls()
	t.Logf("store calls for %d reads: %v", reads, c)
	limits := map[string]int{"CurrentNotices": 0, "MemberActivity": members, "MemberLots": members,
		"BadgesSeen": members, "Member": members, "KeyByHash": 1}
	for m, k := range c {
		if k > limits[m] {
			t.Errorf("%s: %d calls, at most %d (one per cached item)", m, k, limits[m])
		}
	}
}

// The caches count hits, misses and coalesced reads by cache in /metrics
// (what the /ops dashboard's "cache hit ratio" reads).
func TestCacheMetrics(t *testing.T) {
	h, m := metricsServer(t, false, nil, ledger.WriterConfig{})
	m.Caches(CacheNames...)
	w := h.newWorld()
	for range 3 {
		h.balance(w.member.ID)
	}
	mfs := h.scrapeMetrics("")
	for name, want := range map[string]float64{"pointd_cache_misses_total": 1, "pointd_cache_hits_total": 2} {
		s := sample(mfs, name, map[string]string{"cache": "balances"})
		if s == nil || s.GetCounter().GetValue() != want {
			t.Errorf("%s{cache=balances} = %v, want %v", name, s, want)
		}
	}
	for _, c := range CacheNames {
		if sample(mfs, "pointd_cache_coalesced_total", map[string]string{"cache": c}) == nil {
			t.Errorf("no pointd_cache_coalesced_total series for %s", c)
		}
	}
}
