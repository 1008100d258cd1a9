package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// Directory creates (merchants, stores, members, keys) are idempotent by
// construction: the new row's id is derived from the caller's idempotency
// scope (what owns its key: auth.Key.IdempotencyScope) and its
// Idempotency-Key, so a retry finds the row it made the first time, and two
// racing retries cannot both insert it.
var idNamespace = uuid.MustParse("8c5a3c1e-5f0e-4c0e-9a57-8a4f3b3f2d10")

func derivedID(r *http.Request, kind string) string {
	return uuid.NewSHA1(idNamespace, []byte(caller(r).IdempotencyScope()+"\x00"+kind+"\x00"+r.Header.Get(headerIdempotencyKey))).String()
}

// createOnce runs create unless a row with id exists; if one does, same
// reports whether it was made by the same request (a replay) or not.
// then, when given, runs after a creation and after each replay of it
// (recording the audit entry, which a replay writes if the first attempt
// stopped before it).
func createOnce[T any](w http.ResponseWriter, r *http.Request, get func(context.Context) (T, error),
	create func(context.Context) (T, error), same func(T) bool, then ...func(*http.Request, T)) {
	if v, err := get(r.Context()); err == nil {
		replay(w, r, v, same, then)
		return
	}
	v, err := create(r.Context())
	if err != nil {
		if prev, gerr := get(r.Context()); gerr == nil { // lost a race with our own retry
			replay(w, r, prev, same, then)
			return
		}
		writeError(w, r, err)
		return
	}
	for _, f := range then {
		f(r, v)
	}
	writeJSON(w, http.StatusCreated, v)
}

func replay[T any](w http.ResponseWriter, r *http.Request, v T, same func(T) bool, then []func(*http.Request, T)) {
	if !same(v) {
		writeProblem(w, r, ledger.Errorf(ledger.CodeIdempotencyReused,
			"this Idempotency-Key was already used for a different request; use a new key for a new request"))
		return
	}
	for _, f := range then {
		f(r, v)
	}
	w.Header().Set(headerReplayed, "true")
	writeJSON(w, http.StatusCreated, v)
}

type merchantRequest struct {
	Name              string `json:"name"`
	EarnRateBP        *int64 `json:"earn_rate_bp"`
	PointValidityDays *int   `json:"point_validity_days"`
}

func (s *Server) createMerchant(w http.ResponseWriter, r *http.Request) {
	var req merchantRequest
	if !s.read(w, r, &req, false) {
		return
	}
	if err := checkName("name", req.Name); err != nil {
		writeProblem(w, r, err)
		return
	}
	if req.EarnRateBP == nil || *req.EarnRateBP < 0 || *req.EarnRateBP > ledger.MaxEarnRateBP {
		writeProblem(w, r, ledger.Invalid("earn_rate_bp", "is required, basis points from 0 to %d (100 bp = 1%%)", ledger.MaxEarnRateBP))
		return
	}
	validity := 365
	if req.PointValidityDays != nil {
		validity = *req.PointValidityDays
	}
	if validity < 1 || validity > ledger.MaxValidityDays {
		writeProblem(w, r, ledger.Invalid("point_validity_days", "must be from 1 to %d", ledger.MaxValidityDays))
		return
	}
	id := derivedID(r, "merchant")
	createOnce(w, r, func(ctx context.Context) (ledger.Merchant, error) { return s.store.Merchant(ctx, id) },
		func(ctx context.Context) (ledger.Merchant, error) {
			m := ledger.Merchant{ID: id, Name: req.Name, EarnRateBP: *req.EarnRateBP, PointValidityDays: validity,
				Status: "active", CreatedAt: ledger.MicroTime(time.Now())}
			err := s.store.CreateMerchant(ctx, &m)
			return m, err
		},
		func(m ledger.Merchant) bool {
			return m.Name == req.Name && m.EarnRateBP == *req.EarnRateBP && m.PointValidityDays == validity
		}, s.auditMerchantCreate)
}

func (s *Server) getMerchant(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMerchantNotFound)
	if !ok {
		return
	}
	if k := caller(r); !seesAll(k) && k.MerchantID != id {
		writeProblem(w, r, ledger.Errorf(ledger.CodeMerchantNotFound, "no merchant with id %q", id))
		return
	}
	m, err := s.rp.merchants.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

type storeRequest struct {
	Name string `json:"name"`
}

func (s *Server) createStore(w http.ResponseWriter, r *http.Request) {
	var req storeRequest
	if !s.read(w, r, &req, false) {
		return
	}
	if err := checkName("name", req.Name); err != nil {
		writeProblem(w, r, err)
		return
	}
	mid, ok := pathID(w, r, ledger.CodeMerchantNotFound)
	if !ok {
		return
	}
	if _, err := s.store.Merchant(r.Context(), mid); err != nil {
		writeError(w, r, err)
		return
	}
	id := derivedID(r, "store")
	createOnce(w, r, func(ctx context.Context) (ledger.Shop, error) {
		si, err := s.store.StoreInfo(ctx, id)
		return si.Shop, err
	}, func(ctx context.Context) (ledger.Shop, error) {
		st := ledger.Shop{ID: id, MerchantID: mid, Name: req.Name, Status: ledger.StatusActive, CreatedAt: ledger.MicroTime(time.Now())}
		return st, s.store.CreateStore(ctx, st)
	}, func(st ledger.Shop) bool { return st.MerchantID == mid && st.Name == req.Name }, s.auditStoreCreate)
}

func (s *Server) getStore(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeStoreNotFound)
	if !ok {
		return
	}
	si, err := s.rp.stores.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if k := caller(r); !seesAll(k) && k.MerchantID != si.MerchantID {
		writeProblem(w, r, ledger.Errorf(ledger.CodeStoreNotFound, "no store with id %q", si.ID))
		return
	}
	writeJSON(w, http.StatusOK, si.Shop)
}

type memberRequest struct {
	Phone string `json:"phone"`
	Name  string `json:"name"`
}

func (s *Server) createMember(w http.ResponseWriter, r *http.Request) {
	var req memberRequest
	if !s.read(w, r, &req, false) {
		return
	}
	phone, perr := s.normalizePhone("phone", req.Phone)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	if err := checkName("name", req.Name); err != nil {
		writeProblem(w, r, err)
		return
	}
	id := derivedID(r, "member")
	createOnce(w, r, func(ctx context.Context) (ledger.Member, error) { return s.store.Member(ctx, id) },
		func(ctx context.Context) (ledger.Member, error) {
			var err error
			for range 5 { // a fresh card number collides about never; a few tries settle it
				m := ledger.Member{ID: id, CardNumber: ledger.NewCardNumber(), Phone: phone, Name: req.Name,
					Status: "active", CreatedAt: ledger.MicroTime(time.Now())}
				err = s.store.CreateMember(ctx, &m)
				var e *ledger.Error
				if errors.As(err, &e) && e.Code == ledger.CodeConflict && e.Field == "card_number" {
					continue
				}
				return m, err
			}
			return ledger.Member{}, err
		},
		func(m ledger.Member) bool { return m.Phone == phone && m.Name == req.Name }, s.auditMemberCreate)
}

func (s *Server) getMember(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	reveal, rerr := wantsReveal(r)
	if rerr != nil {
		writeProblem(w, r, rerr)
		return
	}
	m, err := s.rp.members.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	v, err := s.memberAnswer(r, m, reveal) // pii.go
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) findMembers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	card, phone := q.Get("card_number"), q.Get("phone")
	if q.Has("name") {
		if card != "" || phone != "" {
			writeProblem(w, r, ledger.Invalid("name", "look up by card_number, phone or name, one of them"))
			return
		}
		s.searchMembers(w, r, q.Get("name"))
		return
	}
	reveal, rerr := wantsReveal(r)
	if rerr != nil {
		writeProblem(w, r, rerr)
		return
	}
	var m ledger.Member
	var err error
	switch {
	case card != "" && phone != "":
		writeProblem(w, r, ledger.Invalid("phone", "look up by card_number or phone, not both"))
		return
	case card != "":
		if !ledger.ValidCardNumber(card) {
			writeProblem(w, r, ledger.Invalid("card_number", "is not a valid card number (16 digits with a check digit)"))
			return
		}
		m, err = s.store.MemberByCard(r.Context(), card)
	case phone != "":
		// A query string turns an unencoded + into a space (NormalizeQuery).
		p, perr := s.cfg.Phones.NormalizeQuery(phone)
		if perr != nil {
			writeProblem(w, r, ledger.Invalid("phone", "%s", perr.Error()))
			return
		}
		m, err = s.store.MemberByPhone(r.Context(), p)
	default:
		writeProblem(w, r, ledger.Invalid("card_number", "give card_number or phone"))
		return
	}
	out := page[any]{Items: []any{}}
	if err == nil {
		v, err := s.memberAnswer(r, m, reveal) // pii.go
		if err != nil {
			writeError(w, r, err)
			return
		}
		out.Items = append(out.Items, v)
	} else if ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

type keyRequest struct {
	Role       string `json:"role"`
	MerchantID string `json:"merchant_id"`
	StoreID    string `json:"store_id"`
	Name       string `json:"name"`
	// The key's own rate limit (overload.go); 0: the server's default.
	RateLimitPerSecond int `json:"rate_limit_per_second"`
	RateLimitBurst     int `json:"rate_limit_burst"`
}

type keyResponse struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`
	Prefix     string    `json:"prefix"`
	Role       auth.Role `json:"role"`
	Mode       auth.Mode `json:"mode"`
	MerchantID string    `json:"merchant_id,omitempty"`
	StoreID    string    `json:"store_id,omitempty"`
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// 0 (left out): the server's default.
	RateLimitPerSecond int `json:"rate_limit_per_second,omitempty"`
	RateLimitBurst     int `json:"rate_limit_burst,omitempty"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var req keyRequest
	if !s.read(w, r, &req, false) {
		return
	}
	role := auth.Role(req.Role)
	switch role {
	case auth.RoleAdmin, auth.RoleViewer, auth.RoleApp:
		// Operators' keys and a member app's backend belong to no merchant;
		// an app key's name says which app it is (the owner lists show).
		if req.MerchantID != "" {
			writeProblem(w, r, ledger.Invalid("merchant_id", "a %s key belongs to no merchant", role))
			return
		}
		if req.StoreID != "" {
			writeProblem(w, r, ledger.Invalid("store_id", "a %s key belongs to no store", role))
			return
		}
		if role == auth.RoleApp && strings.TrimSpace(req.Name) == "" {
			writeProblem(w, r, ledger.Invalid("name", "an app key needs a name: the app it belongs to"))
			return
		}
	case auth.RolePOS:
		if req.MerchantID == "" {
			writeProblem(w, r, ledger.Invalid("merchant_id", "a pos key belongs to a merchant"))
			return
		}
		if _, err := s.store.Merchant(r.Context(), req.MerchantID); err != nil {
			writeError(w, r, err)
			return
		}
		if req.StoreID != "" {
			si, err := s.store.StoreInfo(r.Context(), req.StoreID)
			if err != nil {
				writeError(w, r, err)
				return
			}
			if si.MerchantID != req.MerchantID {
				writeProblem(w, r, ledger.Invalid("store_id", "store %s belongs to another merchant", req.StoreID))
				return
			}
		}
	default:
		writeProblem(w, r, ledger.Invalid("role", "must be admin, viewer, pos or app"))
		return
	}
	if len(req.Name) > 100 || !utf8.ValidString(req.Name) {
		writeProblem(w, r, ledger.Invalid("name", "at most 100 bytes"))
		return
	}
	if e := checkKeyRateLimit(req.RateLimitPerSecond, req.RateLimitBurst); e != nil {
		writeProblem(w, r, e)
		return
	}
	secret, k := auth.NewSecret(s.cfg.Mode)
	k.RateLimitPerSecond, k.RateLimitBurst = req.RateLimitPerSecond, req.RateLimitBurst
	// A key is shown once and never stored in clear, so a retry cannot be
	// answered with it: the derived id makes the retry fail instead of
	// minting a second key.
	k.ID, k.Role, k.MerchantID, k.StoreID, k.Name = derivedID(r, "key"), role, req.MerchantID, req.StoreID, req.Name
	if err := s.keyStore.CreateKey(r.Context(), k); err != nil {
		if ledger.ErrorCode(err) == ledger.CodeConflict {
			writeProblem(w, r, ledger.Errorf(ledger.CodeIdempotencyReused,
				"a key was already created with this Idempotency-Key; keys are shown only once, so create another with a new key"))
			return
		}
		writeError(w, r, err)
		return
	}
	s.auditKeyCreate(r, k)
	writeJSON(w, http.StatusCreated, keyResponse{ID: k.ID, Key: secret, Prefix: k.Prefix, Role: k.Role, Mode: k.Mode,
		MerchantID: k.MerchantID, StoreID: k.StoreID, Name: k.Name, CreatedAt: k.CreatedAt,
		RateLimitPerSecond: k.RateLimitPerSecond, RateLimitBurst: k.RateLimitBurst})
}

func checkName(field, v string) *ledger.Error {
	if strings.TrimSpace(v) == "" || len(v) > 200 || !utf8.ValidString(v) {
		return ledger.Invalid(field, "is required, at most 200 bytes")
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return ledger.Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// normalizePhone reads a phone number of a request body into E.164, or
// refuses it naming field.
func (s *Server) normalizePhone(field, p string) (string, *ledger.Error) {
	n, err := s.cfg.Phones.Normalize(p)
	if err != nil {
		return "", ledger.Invalid(field, "%s", err.Error())
	}
	return n, nil
}
