package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pointd/pointd/internal/auth"
)

const cookieName = "pointd_ops"

// sessions are the dashboard's logins: random tokens kept in memory (a
// restart logs everyone out), by their SHA-256.
type sessions struct {
	idle, maxAge time.Duration

	mu sync.Mutex
	m  map[[32]byte]session
}

type session struct {
	created, lastUsed time.Time
	key               []byte // the hash of the key that opened it, asked about at every use
}

const maxSessions = 1000

func newSessions(idle, maxAge time.Duration) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, m: map[[32]byte]session{}}
}

func (s *sessions) create(now time.Time, key []byte) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.purge(now)
	if len(s.m) >= maxSessions { // drop the least recently used
		var oldest [32]byte
		first := true
		for k, v := range s.m {
			if first || v.lastUsed.Before(s.m[oldest].lastUsed) {
				oldest, first = k, false
			}
		}
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(token))] = session{created: now, lastUsed: now, key: key}
	return token
}

func (s *sessions) purge(now time.Time) {
	for k, v := range s.m {
		if !s.live(v, now) {
			delete(s.m, k)
		}
	}
}

func (s *sessions) live(v session, now time.Time) bool {
	return now.Sub(v.lastUsed) < s.idle && now.Sub(v.created) < s.maxAge
}

// valid reports whether token is a live session, and marks it used; key is
// the hash of the API key that opened it.
func (s *sessions) valid(token string, now time.Time) (key []byte, ok bool) {
	if token == "" || len(token) > 100 {
		return nil, false
	}
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return nil, false
	}
	if !s.live(v, now) {
		delete(s.m, k)
		return nil, false
	}
	v.lastUsed = now
	s.m[k] = v
	return v.key, true
}

func (s *sessions) end(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(token)))
}

// bearer is the secret of an Authorization: Bearer header.
func bearer(r *http.Request) (string, bool) {
	scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", false
	}
	return secret, true
}

// Access is what a key may do on the dashboard.
type Access int

const (
	NoAccess Access = iota
	// ReadOnly is a viewer key's: the dashboard and its data, no action.
	ReadOnly
	// Admin is an admin key's: everything.
	Admin
)

func (a Access) String() string {
	switch a {
	case Admin:
		return "admin"
	case ReadOnly:
		return "read-only"
	}
	return "none"
}

// access is what r may do, and the hash of the key it comes with: a key as
// a bearer token, or a live session cookie. A session is worth what its key
// is worth now, so revoking the key ends it at its next request.
func (d *Dashboard) access(r *http.Request) (Access, []byte) {
	if secret, ok := bearer(r); ok {
		if len(secret) > 256 {
			return NoAccess, nil
		}
		h := auth.HashSecret(secret)
		return d.cfg.CheckKey(r.Context(), h), h
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return NoAccess, nil
	}
	key, ok := d.sessions.valid(c.Value, d.cfg.Now())
	if !ok {
		return NoAccess, nil
	}
	a := d.cfg.CheckKey(r.Context(), key)
	if a == NoAccess {
		d.sessions.end(c.Value)
		d.log.Info("ops: session ended, its key is no longer valid", "remote", r.RemoteAddr)
	}
	return a, key
}

type ctxAccess struct{}

// accessOf is what require let through.
func accessOf(r *http.Request) (Access, []byte) {
	v, _ := r.Context().Value(ctxAccess{}).(grant)
	return v.access, v.key
}

type grant struct {
	access Access
	key    []byte
}

// require answers 401 to anyone without access.
func (d *Dashboard) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, key := d.access(r)
		if a == NoAccess {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pointd ops"`)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"error": "log in at /ops, or send an admin or viewer API key as 'Authorization: Bearer pd_…'"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxAccess{}, grant{a, key})))
	})
}

// page is the dashboard for the authorized, the login form for the others.
func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	a, _ := d.access(r)
	if a == NoAccess {
		msg := ""
		if _, ok := bearer(r); ok {
			msg = "That Authorization header does not carry an admin or viewer key of this server."
		}
		d.loginPage(w, http.StatusUnauthorized, msg)
		return
	}
	b, err := staticFS.ReadFile("static/index.html")
	if err != nil {
		http.Error(w, "the dashboard is missing from this build", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

var loginTmpl = template.Must(template.ParseFS(staticFS, "static/login.html"))

func (d *Dashboard) loginPage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("WWW-Authenticate", `Bearer realm="pointd ops"`)
	w.WriteHeader(status)
	_ = loginTmpl.Execute(w, map[string]string{"Error": msg, "Title": d.cfg.Title})
}

// sameOrigin refuses a form posted from another site: a browser says where
// a request comes from in Sec-Fetch-Site, or at least in Origin, which must
// then name this host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser: nothing to forge
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site login refused", http.StatusForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		d.loginPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("key"))
	a, hash := NoAccess, auth.HashSecret(secret)
	if secret != "" && len(secret) <= 256 {
		a = d.cfg.CheckKey(r.Context(), hash)
	}
	if a == NoAccess {
		d.log.Warn("ops: login refused", "remote", r.RemoteAddr)
		d.loginPage(w, http.StatusUnauthorized, "That is not an admin or viewer key of this server.")
		return
	}
	now := d.cfg.Now()
	token := d.sessions.create(now, hash)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/ops",
		MaxAge:   int(d.cfg.SessionMaxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
	d.log.Info("ops: login", "remote", r.RemoteAddr, "access", a.String())
	http.Redirect(w, r, "/ops", http.StatusSeeOther)
}

func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "cross-site logout refused", http.StatusForbidden)
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		d.sessions.end(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ops", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r)})
	http.Redirect(w, r, "/ops", http.StatusSeeOther)
}

// secure: the cookie is Secure when the page came over HTTPS, directly or
// through a proxy that says so.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// Keys is a CheckKey over pointd's key store: the key must be of the
// server's mode, known, unrevoked and not past the overlap of a rotation;
// an admin key has Admin access, a viewer key ReadOnly, any other none.
func Keys(keys auth.KeyStore, mode auth.Mode) func(ctx context.Context, hash []byte) Access {
	return func(ctx context.Context, hash []byte) Access {
		k, err := keys.KeyByHash(ctx, hash)
		if err != nil || k.Mode != mode || !k.Usable(time.Now()) {
			return NoAccess
		}
		switch k.Role {
		case auth.RoleAdmin:
			return Admin
		case auth.RoleViewer:
			return ReadOnly
		}
		return NoAccess
	}
}
