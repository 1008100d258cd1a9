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
}

const maxSessions = 1000

func newSessions(idle, maxAge time.Duration) *sessions {
	return &sessions{idle: idle, maxAge: maxAge, m: map[[32]byte]session{}}
}

func (s *sessions) create(now time.Time) string {
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
	s.m[sha256.Sum256([]byte(token))] = session{created: now, lastUsed: now}
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

// valid reports whether token is a live session, and marks it used.
func (s *sessions) valid(token string, now time.Time) bool {
	if token == "" || len(token) > 100 {
		return false
	}
	k := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	if !ok {
		return false
	}
	if !s.live(v, now) {
		delete(s.m, k)
		return false
	}
	v.lastUsed = now
	s.m[k] = v
	return true
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

// authorized: an admin key as a bearer token, or a live session cookie.
func (d *Dashboard) authorized(r *http.Request) bool {
	if secret, ok := bearer(r); ok {
		return len(secret) <= 256 && d.cfg.CheckAdminKey(r.Context(), secret)
	}
	c, err := r.Cookie(cookieName)
	return err == nil && d.sessions.valid(c.Value, d.cfg.Now())
}

// require answers 401 to anyone not authorized.
func (d *Dashboard) require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pointd ops"`)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]string{
				"error": "log in at /ops, or send an admin API key as 'Authorization: Bearer pd_…'"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// page is the dashboard for the authorized, the login form for the others.
func (d *Dashboard) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !d.authorized(r) {
		msg := ""
		if _, ok := bearer(r); ok {
			msg = "That Authorization header does not carry an admin key of this server."
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
	if secret == "" || len(secret) > 256 || !d.cfg.CheckAdminKey(r.Context(), secret) {
		d.log.Warn("ops: login refused", "remote", r.RemoteAddr)
		d.loginPage(w, http.StatusUnauthorized, "That is not an admin key of this server.")
		return
	}
	now := d.cfg.Now()
	token := d.sessions.create(now)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: token, Path: "/ops",
		MaxAge:   int(d.cfg.SessionMaxAge / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure(r),
	})
	d.log.Info("ops: login", "remote", r.RemoteAddr)
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

// AdminKeys is a CheckAdminKey over pointd's key store: the secret must be
// a key of the server's mode, known, unrevoked and not past the overlap of
// a rotation, with the admin role.
func AdminKeys(keys auth.KeyStore, mode auth.Mode) func(ctx context.Context, secret string) bool {
	return func(ctx context.Context, secret string) bool {
		if m, ok := auth.ParseMode(secret); !ok || m != mode || len(secret) > 128 {
			return false
		}
		k, err := keys.KeyByHash(ctx, auth.HashSecret(secret))
		return err == nil && k.Role == auth.RoleAdmin && k.Usable(time.Now())
	}
}
