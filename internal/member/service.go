package member

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/phone"
	"github.com/pointd/pointd/internal/privacy"
)

// Error codes of the member side (the HTTP layer maps them to statuses).
const (
	CodeRateLimited = "rate_limited" // 429 with Retry-After
	CodeInvalidCode = "invalid_code" // 401: wrong, expired, spent or dead code, or no such member
)

// Config tunes the Service. Zero values take the defaults in brackets.
type Config struct {
	Mode   auth.Mode       // the server's mode, carried by every session token
	Phones *privacy.Phones // the same data key the store uses [privacy.ProcessPhones()]
	// Numbers reads phone numbers into E.164, so that every spelling of
	// one number is one login, one member and one count against
	// PhoneCodes [national numbers read as phone.DefaultRegion's].
	Numbers     phone.Plan
	Sender      Sender       // [LogSender on Log]
	Log         *slog.Logger // [slog.Default()]
	Now         func() time.Time
	CodeTTL     time.Duration // how long a code works [5m]
	MaxAttempts int           // tries that use a code up, the right one included [5]
	SessionTTL  time.Duration // how long a session works [30 days]
	// PhoneCodes codes may be sent to one phone in any PhoneWindow [5 per 1h].
	// Counted in the database, so several instances share the limit.
	PhoneCodes  int
	PhoneWindow time.Duration
	// IPRequests code requests, and as many login attempts, from one client
	// address in any IPWindow [20 per 10m], counted in this process.
	IPRequests  int
	IPWindow    time.Duration
	SendTimeout time.Duration // per code sent [10s]
}

// Service runs member logins, sessions and withdrawal.
type Service struct {
	cfg     Config
	store   Store
	ledger  ledger.Store
	ipCodes *windowLimiter
	ipLogin *windowLimiter
	codeKey []byte
	purged  atomic.Int64 // unix seconds of the last purge started here

	// phoneLocks serialise counting and issuing codes for one phone number
	// (striped by its keyed hash), so concurrent requests on this instance
	// cannot all count under the limit and all get a code. Several
	// instances may still each issue one past it at the same moment.
	phoneLocks [64]sync.Mutex
}

// purgeAfter is how long login codes and dead sessions are kept: long
// enough for the per-phone limit and for a support question about a
// failed login, short enough that the keyed hashes of numbers that never
// became members do not pile up.
const purgeAfter = 24 * time.Hour

// maybePurge deletes old codes and dead sessions, at most once an hour per
// instance, in the background.
func (s *Service) maybePurge(ctx context.Context, now time.Time) {
	last := s.purged.Load()
	if now.Unix()-last < 3600 || !s.purged.CompareAndSwap(last, now.Unix()) {
		return
	}
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		before := now.Add(-max(purgeAfter, s.cfg.PhoneWindow, s.cfg.CodeTTL))
		if n, err := s.store.Purge(pctx, before); err != nil {
			s.cfg.Log.Warn("purge of old login codes and sessions", "err", err)
		} else if n > 0 {
			s.cfg.Log.Info("purged old login codes and sessions", "rows", n)
		}
	}()
}

// NewService builds a Service on a member store and the ledger store
// (members are found and created there).
func NewService(cfg Config, store Store, ls ledger.Store) *Service {
	if cfg.Mode == "" {
		cfg.Mode = auth.ModeLive
	}
	if cfg.Phones == nil {
		cfg.Phones = privacy.ProcessPhones()
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Sender == nil {
		cfg.Sender = LogSender{Log: cfg.Log}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CodeTTL, 5*time.Minute)
	def(&cfg.SessionTTL, 30*24*time.Hour)
	def(&cfg.PhoneWindow, time.Hour)
	def(&cfg.IPWindow, 10*time.Minute)
	def(&cfg.SendTimeout, 10*time.Second)
	defInt(&cfg.MaxAttempts, 5)
	defInt(&cfg.PhoneCodes, 5)
	defInt(&cfg.IPRequests, 20)
	return &Service{cfg: cfg, store: store, ledger: ls,
		ipCodes: newWindowLimiter(cfg.IPRequests, cfg.IPWindow),
		ipLogin: newWindowLimiter(cfg.IPRequests, cfg.IPWindow),
		// Codes are hashed under a key of their own (derived from the data
		// key): a 6-digit code under a plain hash is read back by trying
		// all million.
		codeKey: cfg.Phones.Index("pointd login code key v1")}
}

// Config returns the configuration in effect, defaults filled in.
func (s *Service) Config() Config { return s.cfg }

func rateLimited(wait time.Duration, what string) *ledger.Error {
	secs := int((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return &ledger.Error{Code: CodeRateLimited, RetryAfter: secs,
		Message: fmt.Sprintf("too many %s; try again in %d s", what, secs)}
}

func (s *Service) codeHash(otpID, code string) []byte {
	m := hmac.New(sha256.New, s.codeKey)
	m.Write([]byte(otpID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}

// e164 reads a number into the one form codes are counted and members
// found by; a number that is none is refused naming the phone field.
func (s *Service) e164(p string) (string, error) {
	n, err := s.cfg.Numbers.Normalize(p)
	if err != nil {
		return "", ledger.Invalid("phone", "%s", err.Error())
	}
	return n, nil
}

// RequestCode issues a login code for phone (in any spelling) and hands it to
// the sender in the background. It answers the same whether or not phone
// belongs to a member: a code for a new number signs its owner up at login.
// ip is the client's address, for the per-address limit.
func (s *Service) RequestCode(ctx context.Context, phone, ip string) (expiresAt time.Time, err error) {
	now := s.cfg.Now()
	if ok, wait := s.ipCodes.allow(ip, now); !ok {
		return time.Time{}, rateLimited(wait, "login codes from this address")
	}
	if phone, err = s.e164(phone); err != nil {
		return time.Time{}, err
	}
	ph := s.cfg.Phones.Index(phone)
	mu := &s.phoneLocks[int(ph[0])%len(s.phoneLocks)]
	mu.Lock()
	defer mu.Unlock()
	since := now.Add(-s.cfg.PhoneWindow)
	n, oldest, err := s.store.CountOTPs(ctx, ph, since)
	if err != nil {
		return time.Time{}, err
	}
	if n >= s.cfg.PhoneCodes {
		return time.Time{}, rateLimited(oldest.Add(s.cfg.PhoneWindow).Sub(now), "login codes for this phone number")
	}
	code, err := newCode()
	if err != nil {
		return time.Time{}, err
	}
	id := uuid.Must(uuid.NewV7()).String()
	o := OTP{ID: id, PhoneHash: ph, CodeHash: s.codeHash(id, code), CreatedAt: ledger.MicroTime(now),
		ExpiresAt: ledger.MicroTime(now.Add(s.cfg.CodeTTL))}
	if err := s.store.CreateOTP(ctx, o); err != nil {
		return time.Time{}, err
	}
	c := Code{Phone: phone, Code: code, ExpiresAt: o.ExpiresAt,
		Message: fmt.Sprintf("Your pointd login code is %s. It expires in %d minutes.", code, int(s.cfg.CodeTTL.Minutes()+0.5))}
	s.maybePurge(ctx, now)
	go func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SendTimeout)
		defer cancel()
		if err := s.cfg.Sender.Send(sctx, c); err != nil {
			s.cfg.Log.Warn("login code not sent", "phone", privacy.Mask(phone), "err", err)
		}
	}()
	return o.ExpiresAt, nil
}

// newCode is six decimal digits, uniformly from crypto/rand.
func newCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%06d", n.Int64()), nil
}

// Login checks a code for phone (in any spelling) and opens a session. Every failure (no code, wrong,
// expired, spent or dead code) is the same invalid_code answer. A phone
// with no member signs up: the code proved its owner has it.
func (s *Service) Login(ctx context.Context, phone, code, ip string) (token string, sess Session, created bool, err error) {
	now := s.cfg.Now()
	if ok, wait := s.ipLogin.allow(ip, now); !ok {
		return "", Session{}, false, rateLimited(wait, "login attempts from this address")
	}
	if phone, err = s.e164(phone); err != nil {
		return "", Session{}, false, err
	}
	invalid := &ledger.Error{Code: CodeInvalidCode, Field: "code",
		Message: "this code is wrong, expired or already used; ask for a new one"}
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return "", Session{}, false, invalid
	}
	o, err := s.store.LatestOTP(ctx, s.cfg.Phones.Index(phone))
	if errors.Is(err, ErrNoOTP) {
		return "", Session{}, false, invalid
	}
	if err != nil {
		return "", Session{}, false, err
	}
	if !o.UsedAt.IsZero() || !now.Before(o.ExpiresAt) || o.Attempts >= s.cfg.MaxAttempts {
		return "", Session{}, false, invalid
	}
	took, err := s.store.TakeAttempt(ctx, o.ID, now, s.cfg.MaxAttempts)
	if err != nil {
		return "", Session{}, false, err
	}
	if !took || !hmac.Equal(o.CodeHash, s.codeHash(o.ID, code)) {
		return "", Session{}, false, invalid
	}
	used, err := s.store.UseOTP(ctx, o.ID, now)
	if err != nil {
		return "", Session{}, false, err
	}
	if !used { // a concurrent login spent it
		return "", Session{}, false, invalid
	}
	m, err := s.ledger.MemberByPhone(ctx, phone)
	if ledger.ErrorCode(err) == ledger.CodeMemberNotFound {
		m, err = s.signUp(ctx, phone, now)
		created = err == nil
	}
	if err != nil {
		return "", Session{}, false, err
	}
	// A phone that still finds a merged member logs in as the member it
	// went into: the person is that member now, and no session is ever of
	// a merged member.
	if m.Status == ledger.StatusMerged && m.MergedInto != "" {
		if m, err = s.ledger.Member(ctx, m.MergedInto); err != nil {
			return "", Session{}, false, err
		}
	}
	if m.Status == ledger.StatusMerged || m.Status == ledger.StatusWithdrawn {
		return "", Session{}, false, ledger.Errorf(ledger.CodeMemberNotFound, "this membership has ended; contact support")
	}
	if m.Status == "suspended" {
		return "", Session{}, false, ledger.Errorf(ledger.CodeMemberSuspended, "this membership is suspended; contact support")
	}
	token, sess = NewSessionToken(s.cfg.Mode)
	sess.ID = uuid.Must(uuid.NewV7()).String()
	sess.MemberID = m.ID
	sess.CreatedAt = ledger.MicroTime(now)
	sess.ExpiresAt = ledger.MicroTime(now.Add(s.cfg.SessionTTL))
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return "", Session{}, false, err
	}
	return token, sess, created, nil
}

func (s *Service) signUp(ctx context.Context, phone string, now time.Time) (ledger.Member, error) {
	var err error
	for range 5 { // a fresh card number collides about never; a few tries settle it
		m := ledger.Member{ID: uuid.Must(uuid.NewV7()).String(), CardNumber: ledger.NewCardNumber(), Phone: phone,
			Status: "active", CreatedAt: ledger.MicroTime(now)}
		err = s.ledger.CreateMember(ctx, &m)
		if err == nil {
			return m, nil
		}
		var e *ledger.Error
		if errors.As(err, &e) && e.Code == ledger.CodeConflict && e.Field == "phone" {
			// Two logins of the same new phone at once: the other signed up.
			return s.ledger.MemberByPhone(ctx, phone)
		}
		if !(errors.As(err, &e) && e.Code == ledger.CodeConflict && e.Field == "card_number") {
			return ledger.Member{}, err
		}
	}
	return ledger.Member{}, err
}

// Authenticate finds the session of a token. It does not cache: the HTTP
// layer does, for as long as it documents.
func (s *Service) Authenticate(ctx context.Context, token string) (Session, error) {
	sess, err := s.store.SessionByHash(ctx, auth.HashSecret(token))
	if err != nil {
		return Session{}, err
	}
	if !sess.RevokedAt.IsZero() || !s.cfg.Now().Before(sess.ExpiresAt) {
		return Session{}, ErrNoSession
	}
	return sess, nil
}

// Logout revokes a session.
func (s *Service) Logout(ctx context.Context, sessionID string) error {
	return s.store.RevokeSession(ctx, sessionID, ledger.MicroTime(s.cfg.Now()))
}

// Withdraw ends a membership: see Store.Withdraw.
func (s *Service) Withdraw(ctx context.Context, memberID string) error {
	return s.store.Withdraw(ctx, memberID, ledger.MicroTime(s.cfg.Now()))
}

// Now is the service's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// Session tokens: "pd_ses_" and the mode, then 40 random characters of
// base62 (≈238 bits). They never begin like an API key ("pd_live_",
// "pd_test_"), so neither can be taken for the other.
const sessionPrefix = "pd_ses_"

// NewSessionToken returns a fresh token for mode and the Session to store
// (hash, prefix and mode filled in).
func NewSessionToken(mode auth.Mode) (string, Session) {
	secret, _ := auth.NewSecret(mode) // "pd_<mode>_" + 32 random base62
	extra, _ := auth.NewSecret(mode)
	body := strings.TrimPrefix(secret, "pd_"+string(mode)+"_") + strings.TrimPrefix(extra, "pd_"+string(mode)+"_")[:8]
	token := sessionPrefix + string(mode) + "_" + body
	return token, Session{Hash: auth.HashSecret(token), Prefix: token[:len(sessionPrefix)+len(mode)+1+4], Mode: mode}
}

// ParseSessionMode reads the mode a session token claims from its prefix;
// ok is false when the text is not a session token.
func ParseSessionMode(token string) (auth.Mode, bool) {
	switch {
	case strings.HasPrefix(token, sessionPrefix+"live_"):
		return auth.ModeLive, true
	case strings.HasPrefix(token, sessionPrefix+"test_"):
		return auth.ModeTest, true
	}
	return "", false
}
