package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

// The operators' back office: update, list and suspend merchants,
// stores and members; list, revoke and rotate API keys; read the audit log.
// Admin keys change; admin and viewer keys read. Every change is written
// with its audit entry in one database transaction (backoffice.Store).
//
// Updates, suspensions, reactivations and revocations set a state rather
// than add to one: sending one again finds nothing to change, writes
// nothing (no second audit entry) and answers the current state. So they
// need no Idempotency-Key (one sent is ignored); a rotation, which makes a
// key, does.

// seesAll reports whether a key reads as an operator: everything, of every
// merchant.
func seesAll(k auth.Key) bool { return k.Role == auth.RoleAdmin || k.Role == auth.RoleViewer }

// office returns the back office's store, or answers 500 when the server
// runs on a store without one.
func (s *Server) officeOr500(w http.ResponseWriter, r *http.Request) (backoffice.Store, bool) {
	if s.office == nil {
		writeError(w, r, errNoBackoffice)
		return nil, false
	}
	return s.office, true
}

type noBackofficeError struct{}

func (noBackofficeError) Error() string { return "this store does not implement backoffice.Store" }

var errNoBackoffice error = noBackofficeError{}

// auditEntry starts an audit entry of the caller's action.
func auditEntry(r *http.Request, action, targetType, targetID string) *backoffice.Entry {
	k := caller(r)
	return &backoffice.Entry{ID: ledger.NewID(), At: ledger.MicroTime(time.Now()), ActorKeyID: k.ID, ActorPrefix: k.Prefix,
		Action: action, TargetType: targetType, TargetID: targetID}
}

// auditID derives an audit entry's id from the request's idempotency scope and
// Idempotency-Key, like the ids of created rows: a retried request writes
// its entry once, and fills it in if the first attempt stopped before it.
func auditID(r *http.Request, kind string) string {
	return uuid.NewSHA1(idNamespace, []byte(caller(r).IdempotencyScope()+"\x00audit:"+kind+"\x00"+r.Header.Get(headerIdempotencyKey))).String()
}

// appendAudit writes an entry that could not share its change's
// transaction (creations, adjustments). A failure is logged, not answered:
// the change itself is done, and the caller's retry writes the entry.
func (s *Server) appendAudit(r *http.Request, e *backoffice.Entry) {
	if s.office == nil {
		return
	}
	// Detached so that a caller leaving does not lose the entry, bounded so
	// that a database that does not answer does not hold the answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), sharedLoadTimeout)
	defer cancel()
	if err := s.office.AppendAudit(ctx, *e); err != nil {
		logger(r).Error("audit entry not written", "err", err, "action", e.Action, "target", e.TargetID)
	}
}

// readBody decodes the body of a call that needs no Idempotency-Key.
func readBody(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) bool {
	if err := decode(r, dst, allowEmpty); err != nil {
		writeProblem(w, r, err)
		return false
	}
	return true
}

// --- paging --------------------------------------------------------------

// pageOf reads limit and an id cursor. Lists by id give out cursors "i<id>",
// opaque to clients.
func pageOf(r *http.Request) (after string, limit int, err *ledger.Error) {
	q := r.URL.Query()
	limit = defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, cerr := strconv.Atoi(v)
		if cerr != nil || n < 1 || n > maxPageSize {
			return "", 0, ledger.Invalid("limit", "must be an integer from 1 to %d", maxPageSize)
		}
		limit = n
	}
	if c := q.Get("cursor"); c != "" {
		b, derr := base64.RawURLEncoding.DecodeString(c)
		id, ok := strings.CutPrefix(string(b), "i")
		if derr != nil || !ok || id == "" || len(id) > 64 || !printableASCII(id) {
			return "", 0, ledger.Invalid("cursor", "is not a cursor this API gave out")
		}
		after = id
	}
	return after, limit, nil
}

// limitPage answers one page of a list read with limit+1 rows: the first limit
// of them, and a cursor after the last one when there was one more.
func limitPage[T any](items []T, limit int, cursor func(T) string) page[T] {
	p := page[T]{Items: items}
	if len(items) > limit {
		p.Items = items[:limit]
		p.NextCursor = cursor(items[limit-1])
	}
	if p.Items == nil {
		p.Items = []T{}
	}
	return p
}

// idPage is limitPage for lists in id order.
func idPage[T any](items []T, limit int, id func(T) string) page[T] {
	return limitPage(items, limit, func(t T) string {
		return base64.RawURLEncoding.EncodeToString([]byte("i" + id(t)))
	})
}

// --- merchants -------------------------------------------------------------

func (s *Server) listMerchants(w http.ResponseWriter, r *http.Request) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	after, limit, perr := pageOf(r)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	ms, err := bo.ListMerchants(r.Context(), after, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, idPage(ms, limit, func(m ledger.Merchant) string { return m.ID }))
}

type merchantPatch struct {
	Name              *string `json:"name"`
	EarnRateBP        *int64  `json:"earn_rate_bp"`
	PointValidityDays *int    `json:"point_validity_days"`
	MaxExplicitPoints *int64  `json:"max_explicit_points"`
	RequireMemberCode *bool   `json:"require_member_code"`
}

func (s *Server) updateMerchant(w http.ResponseWriter, r *http.Request) {
	var req merchantPatch
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeMerchantNotFound)
	if !ok || !readBody(w, r, &req, false) {
		return
	}
	switch {
	case req.Name == nil && req.EarnRateBP == nil && req.PointValidityDays == nil && req.MaxExplicitPoints == nil && req.RequireMemberCode == nil:
		writeProblem(w, r, ledger.Invalid("name", "give at least one of name, earn_rate_bp, point_validity_days, max_explicit_points, require_member_code"))
		return
	case req.MaxExplicitPoints != nil && (*req.MaxExplicitPoints < 0 || *req.MaxExplicitPoints > ledger.MaxPoints):
		writeProblem(w, r, ledger.Invalid("max_explicit_points", "must be from 0 (earns follow the rate only) to %d", ledger.MaxPoints))
		return
	case req.Name != nil && checkName("name", *req.Name) != nil:
		writeProblem(w, r, checkName("name", *req.Name))
		return
	case req.EarnRateBP != nil && (*req.EarnRateBP < 0 || *req.EarnRateBP > ledger.MaxEarnRateBP):
		writeProblem(w, r, ledger.Invalid("earn_rate_bp", "basis points from 0 to %d (100 bp = 1%%)", ledger.MaxEarnRateBP))
		return
	case req.PointValidityDays != nil && (*req.PointValidityDays < 1 || *req.PointValidityDays > ledger.MaxValidityDays):
		writeProblem(w, r, ledger.Invalid("point_validity_days", "must be from 1 to %d", ledger.MaxValidityDays))
		return
	}
	// The ledger reads the merchant's rate and validity inside each batch,
	// so a change applies to every earn committed after this one.
	m, err := bo.UpdateMerchant(r.Context(), id, func(m *ledger.Merchant) (*backoffice.Entry, error) {
		before := backoffice.MerchantFields(*m)
		if req.Name != nil {
			m.Name = *req.Name
		}
		if req.EarnRateBP != nil {
			m.EarnRateBP = *req.EarnRateBP
		}
		if req.PointValidityDays != nil {
			m.PointValidityDays = *req.PointValidityDays
		}
		if req.MaxExplicitPoints != nil {
			m.MaxExplicitPoints = *req.MaxExplicitPoints
		}
		if req.RequireMemberCode != nil {
			m.RequireMemberCode = *req.RequireMemberCode
		}
		after := backoffice.MerchantFields(*m)
		if string(after) == string(before) {
			return nil, nil
		}
		e := auditEntry(r, backoffice.ActionMerchantUpdate, backoffice.TargetMerchant, m.ID)
		e.Before, e.After = before, after
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.forgetMerchant(r, id)
	writeJSON(w, http.StatusOK, m)
}

// statusRequest is the body of a suspension or reactivation.
type statusRequest struct {
	Reason string `json:"reason"`
}

const maxReason = 500

// readStatus reads a suspension's or reactivation's body; needReason says
// the reason is required.
func (s *Server) readStatus(w http.ResponseWriter, r *http.Request, needReason bool) (statusRequest, bool) {
	var req statusRequest
	if !readBody(w, r, &req, !needReason) {
		return req, false
	}
	if len(req.Reason) > maxReason || (needReason && strings.TrimSpace(req.Reason) == "") {
		writeProblem(w, r, ledger.Invalid("reason", "is required, at most %d bytes", maxReason))
		return req, false
	}
	if err := checkText("reason", req.Reason); err != nil {
		writeProblem(w, r, err)
		return req, false
	}
	return req, true
}

// checkText refuses control characters (they would garble logs and lists).
func checkText(field, v string) *ledger.Error {
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return ledger.Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

func (s *Server) suspendMerchant(w http.ResponseWriter, r *http.Request) {
	s.merchantStatus(w, r, ledger.StatusSuspended, backoffice.ActionMerchantSuspend)
}

func (s *Server) reactivateMerchant(w http.ResponseWriter, r *http.Request) {
	s.merchantStatus(w, r, ledger.StatusActive, backoffice.ActionMerchantReactivate)
}

func (s *Server) merchantStatus(w http.ResponseWriter, r *http.Request, status, action string) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeMerchantNotFound)
	if !ok {
		return
	}
	req, ok := s.readStatus(w, r, false)
	if !ok {
		return
	}
	m, err := bo.UpdateMerchant(r.Context(), id, func(m *ledger.Merchant) (*backoffice.Entry, error) {
		if m.Status == status {
			return nil, nil
		}
		e := auditEntry(r, action, backoffice.TargetMerchant, m.ID)
		e.Before = backoffice.MerchantFields(*m)
		m.Status = status
		e.After, e.Reason = backoffice.MerchantFields(*m), req.Reason
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	// At once on this instance: the merchant's keys are looked up again,
	// with the new status, by their next request. Other instances follow
	// within their key cache TTL; the ledger refuses the merchant's earns,
	// redemptions and holds on every instance from the commit on.
	s.dropKeys(func(k auth.Key) bool { return k.MerchantID == id })
	s.forgetMerchant(r, id)
	writeJSON(w, http.StatusOK, m)
}

// --- stores -------------------------------------------------------------

func (s *Server) listStores(w http.ResponseWriter, r *http.Request) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	mid, ok := pathID(w, r, ledger.CodeMerchantNotFound)
	if !ok {
		return
	}
	after, limit, perr := pageOf(r)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	if k := caller(r); !seesAll(k) && k.MerchantID != mid {
		writeProblem(w, r, ledger.Errorf(ledger.CodeMerchantNotFound, "no merchant with id %q", mid))
		return
	}
	if _, err := s.store.Merchant(r.Context(), mid); err != nil {
		writeError(w, r, err)
		return
	}
	list, err := bo.ListStores(r.Context(), mid, after, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, idPage(list, limit, func(s ledger.Shop) string { return s.ID }))
}

type storePatch struct {
	Name *string `json:"name"`
}

func (s *Server) updateStore(w http.ResponseWriter, r *http.Request) {
	var req storePatch
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeStoreNotFound)
	if !ok || !readBody(w, r, &req, false) {
		return
	}
	if req.Name == nil {
		writeProblem(w, r, ledger.Invalid("name", "is required"))
		return
	}
	if err := checkName("name", *req.Name); err != nil {
		writeProblem(w, r, err)
		return
	}
	st, err := bo.UpdateStore(r.Context(), id, func(st *ledger.Shop) (*backoffice.Entry, error) {
		if st.Name == *req.Name {
			return nil, nil
		}
		e := auditEntry(r, backoffice.ActionStoreUpdate, backoffice.TargetStore, st.ID)
		e.Before = backoffice.StoreFields(*st)
		st.Name = *req.Name
		e.After = backoffice.StoreFields(*st)
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.forgetStore(r, id)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) suspendStore(w http.ResponseWriter, r *http.Request) {
	s.storeStatus(w, r, ledger.StatusSuspended, backoffice.ActionStoreSuspend)
}

func (s *Server) reactivateStore(w http.ResponseWriter, r *http.Request) {
	s.storeStatus(w, r, ledger.StatusActive, backoffice.ActionStoreReactivate)
}

func (s *Server) storeStatus(w http.ResponseWriter, r *http.Request, status, action string) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeStoreNotFound)
	if !ok {
		return
	}
	req, ok := s.readStatus(w, r, false)
	if !ok {
		return
	}
	st, err := bo.UpdateStore(r.Context(), id, func(st *ledger.Shop) (*backoffice.Entry, error) {
		if st.Status == status {
			return nil, nil
		}
		e := auditEntry(r, action, backoffice.TargetStore, st.ID)
		e.Before = backoffice.StoreFields(*st)
		st.Status = status
		e.After, e.Reason = backoffice.StoreFields(*st), req.Reason
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.dropKeys(func(k auth.Key) bool { return k.StoreID == id })
	s.forgetStore(r, id)
	writeJSON(w, http.StatusOK, st)
}

// --- members ------------------------------------------------------------

func (s *Server) suspendMember(w http.ResponseWriter, r *http.Request) {
	s.memberStatus(w, r, ledger.StatusSuspended, backoffice.ActionMemberSuspend, true)
}

func (s *Server) reactivateMember(w http.ResponseWriter, r *http.Request) {
	s.memberStatus(w, r, ledger.StatusActive, backoffice.ActionMemberReactivate, false)
}

func (s *Server) memberStatus(w http.ResponseWriter, r *http.Request, status, action string, needReason bool) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	req, ok := s.readStatus(w, r, needReason)
	if !ok {
		return
	}
	m, err := bo.UpdateMemberStatus(r.Context(), id, func(m *ledger.Member) (*backoffice.Entry, error) {
		if m.Status == status {
			return nil, nil
		}
		if m.Status == ledger.StatusWithdrawn {
			return nil, ledger.Errorf(ledger.CodeConflict, "this member has withdrawn: a withdrawal is final")
		}
		e := auditEntry(r, action, backoffice.TargetMember, m.ID)
		e.Before = backoffice.MemberFields(*m, false)
		m.Status = status
		e.After, e.Reason = backoffice.MemberFields(*m, false), req.Reason
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.forgetMember(r, id)
	writeJSON(w, http.StatusOK, m)
}

// searchMembers answers GET /v1/members?name=: operators only (a POS looks
// members up by card or phone, never browses them), phones masked.
func (s *Server) searchMembers(w http.ResponseWriter, r *http.Request, name string) {
	if !seesAll(caller(r)) {
		writeProblem(w, r, ledger.Errorf(ledger.CodeForbidden, "a %s key may not search members by name", caller(r).Role))
		return
	}
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	if strings.TrimSpace(name) == "" || len(name) > 100 || !utf8.ValidString(name) {
		writeProblem(w, r, ledger.Invalid("name", "must be 1 to 100 bytes of text"))
		return
	}
	after, limit, perr := pageOf(r)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	ms, err := bo.SearchMembers(r.Context(), name, after, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	// Phones go out masked, as every ledger.Member encodes.
	writeJSON(w, http.StatusOK, idPage(ms, limit, func(m ledger.Member) string { return m.ID }))
}

// --- keys ---------------------------------------------------------------

// keyInfo is a key as lists show it: never the key, only its prefix.
type keyInfo struct {
	ID         string     `json:"id"`
	Prefix     string     `json:"prefix"`
	Role       auth.Role  `json:"role"`
	Mode       auth.Mode  `json:"mode"`
	MerchantID string     `json:"merchant_id,omitempty"`
	StoreID    string     `json:"store_id,omitempty"`
	Name       string     `json:"name,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
}

func infoOf(k auth.Key) keyInfo {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return keyInfo{ID: k.ID, Prefix: k.Prefix, Role: k.Role, Mode: k.Mode, MerchantID: k.MerchantID, StoreID: k.StoreID,
		Name: k.Name, CreatedAt: k.CreatedAt, LastUsedAt: opt(k.LastUsedAt), RevokedAt: opt(k.RevokedAt), ExpiresAt: opt(k.ExpiresAt)}
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	after, limit, perr := pageOf(r)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	ks, err := bo.ListKeys(r.Context(), after, limit+1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	infos := make([]keyInfo, len(ks))
	for i, k := range ks {
		infos[i] = infoOf(k)
	}
	writeJSON(w, http.StatusOK, idPage(infos, limit, func(k keyInfo) string { return k.ID }))
}

type revokeRequest struct{}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeNotFound)
	if !ok || !readBody(w, r, &req, true) {
		return
	}
	k, err := bo.UpdateKey(r.Context(), id, nil, func(k *auth.Key) (*backoffice.Entry, error) {
		if !k.RevokedAt.IsZero() {
			return nil, nil
		}
		e := auditEntry(r, backoffice.ActionKeyRevoke, backoffice.TargetKey, k.ID)
		e.Before = backoffice.KeyFields(*k)
		k.RevokedAt = ledger.MicroTime(time.Now())
		e.After = backoffice.KeyFields(*k)
		return e, nil
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.dropKeys(func(c auth.Key) bool { return c.ID == id })
	writeJSON(w, http.StatusOK, infoOf(k))
}

type rotateRequest struct {
	OverlapSeconds *int64 `json:"overlap_seconds"`
}

// maxOverlap bounds how long a rotated key keeps working: long enough to
// roll a new key out to a fleet of terminals, short enough that a leaked
// key does not live on.
const maxOverlap = 30 * 24 * 3600

type rotateResponse struct {
	keyResponse
	Replaces          string    `json:"replaces"`
	ReplacedExpiresAt time.Time `json:"replaced_expires_at"`
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	var req rotateRequest
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	id, ok := pathID(w, r, ledger.CodeNotFound)
	if !ok || !s.read(w, r, &req, false) {
		return
	}
	if req.OverlapSeconds == nil || *req.OverlapSeconds < 0 || *req.OverlapSeconds > maxOverlap {
		writeProblem(w, r, ledger.Invalid("overlap_seconds", "is required, seconds from 0 to %d during which the old key keeps working", maxOverlap))
		return
	}
	now := ledger.MicroTime(time.Now())
	end := now.Add(time.Duration(*req.OverlapSeconds) * time.Second)
	// The new key is made inside the change, once the old one is read: it
	// takes the old key's mode, role, owner and name.
	var secret string
	var nk auth.Key
	old, err := bo.UpdateKey(r.Context(), id, &nk, func(k *auth.Key) (*backoffice.Entry, error) {
		if !k.Usable(now) {
			return nil, ledger.Errorf(ledger.CodeConflict, "key %s is revoked or expired; create a new key instead", k.ID)
		}
		if k.Role == auth.RoleMember {
			return nil, ledger.Errorf(ledger.CodeConflict, "a member session is not rotated; it ends with the session")
		}
		secret, nk = auth.NewSecret(k.Mode)
		nk.ID, nk.CreatedAt = derivedID(r, "key"), now
		nk.Role, nk.MerchantID, nk.StoreID, nk.Name = k.Role, k.MerchantID, k.StoreID, k.Name
		nk.RateLimitPerSecond, nk.RateLimitBurst = k.RateLimitPerSecond, k.RateLimitBurst
		nk.Lineage = k.Root() // the new key answers the old one's retries
		e := auditEntry(r, backoffice.ActionKeyRotate, backoffice.TargetKey, k.ID)
		e.Before = backoffice.KeyFields(*k)
		if k.ExpiresAt.IsZero() || end.Before(k.ExpiresAt) {
			k.ExpiresAt = end // a rotation never extends a key's life
		}
		e.After = mustMerge(backoffice.KeyFields(*k), "new_key_id", nk.ID, "new_key_prefix", nk.Prefix)
		return e, nil
	})
	if err != nil {
		// A conflict on the new key's id or hash: the same Idempotency-Key
		// rotated before (the refusals above carry no field).
		if le, ok := err.(*ledger.Error); ok && le.Code == ledger.CodeConflict && le.Field != "" {
			writeProblem(w, r, ledger.Errorf(ledger.CodeIdempotencyReused,
				"a key was already made with this Idempotency-Key; keys are shown only once, so rotate again with a new key"))
			return
		}
		writeError(w, r, err)
		return
	}
	s.dropKeys(func(c auth.Key) bool { return c.ID == id })
	writeJSON(w, http.StatusCreated, rotateResponse{
		keyResponse: keyResponse{ID: nk.ID, Key: secret, Prefix: nk.Prefix, Role: nk.Role, Mode: nk.Mode,
			MerchantID: nk.MerchantID, StoreID: nk.StoreID, Name: nk.Name, CreatedAt: nk.CreatedAt},
		Replaces: old.ID, ReplacedExpiresAt: old.ExpiresAt})
}

// mustMerge adds name/value pairs to a JSON object.
func mustMerge(obj json.RawMessage, kv ...string) json.RawMessage {
	m := map[string]any{}
	_ = json.Unmarshal(obj, &m)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	return b
}

// --- the audit log --------------------------------------------------------

func (s *Server) auditLog(w http.ResponseWriter, r *http.Request) {
	bo, ok := s.officeOr500(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	f := backoffice.AuditFilter{TargetID: q.Get("target"), ActorKeyID: q.Get("actor"), Limit: defaultPageSize}
	for field, v := range map[string]string{"target": f.TargetID, "actor": f.ActorKeyID} {
		if len(v) > 64 || !printableASCII(v) && v != "" {
			writeProblem(w, r, ledger.Invalid(field, "is an id: 1 to 64 printable ASCII characters, no spaces"))
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			writeProblem(w, r, ledger.Invalid("limit", "must be an integer from 1 to %d", maxPageSize))
			return
		}
		f.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		n, ok := s.parseCursor("audit", c)
		if !ok {
			writeProblem(w, r, ledger.Invalid("cursor", "is not a cursor this API gave out"))
			return
		}
		f.BeforeSeq = n
	}
	limit := f.Limit
	f.Limit++
	entries, err := bo.AuditLog(r.Context(), f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, limitPage(entries, limit, func(e backoffice.Entry) string { return s.makeCursor("audit", e.Seq) }))
}

// --- audit entries of creations and adjustments ---------------------------

func (s *Server) auditMerchantCreate(r *http.Request, m ledger.Merchant) {
	e := auditEntry(r, backoffice.ActionMerchantCreate, backoffice.TargetMerchant, m.ID)
	e.ID, e.After = auditID(r, "merchant"), backoffice.MerchantFields(m)
	s.appendAudit(r, e)
}

func (s *Server) auditStoreCreate(r *http.Request, st ledger.Shop) {
	e := auditEntry(r, backoffice.ActionStoreCreate, backoffice.TargetStore, st.ID)
	e.ID, e.After = auditID(r, "store"), backoffice.StoreFields(st)
	s.appendAudit(r, e)
}

// auditMemberCreate records a member made by an operator; the members a POS
// signs up at checkout are the members' own doing, not operator actions.
func (s *Server) auditMemberCreate(r *http.Request, m ledger.Member) {
	if !seesAll(caller(r)) {
		return
	}
	e := auditEntry(r, backoffice.ActionMemberCreate, backoffice.TargetMember, m.ID)
	e.ID, e.After = auditID(r, "member"), backoffice.MemberFields(m, true)
	s.appendAudit(r, e)
}

func (s *Server) auditKeyCreate(r *http.Request, k auth.Key) {
	e := auditEntry(r, backoffice.ActionKeyCreate, backoffice.TargetKey, k.ID)
	e.ID, e.After = auditID(r, "key"), backoffice.KeyFields(k)
	s.appendAudit(r, e)
}

// auditAdjustment records an adjustment, linked to its ledger transaction.
// auditExplicitEarn records an earn with explicit points against its member,
// linked to its transaction; like an adjustment's, the entry follows the
// commit and a retry writes it if it is missing.
func (s *Server) auditExplicitEarn(r *http.Request, res ledger.Result, reason string) {
	var t struct {
		ID             string `json:"id"`
		MemberID       string `json:"member_id"`
		StoreID        string `json:"store_id"`
		Receipt        string `json:"receipt"`
		PurchaseAmount int64  `json:"purchase_amount"`
		Points         int64  `json:"points"`
	}
	if err := json.Unmarshal(res.Body, &t); err != nil || t.ID == "" {
		logger(r).Error("audit entry of an earn with explicit points: unreadable answer", "err", err)
		return
	}
	e := auditEntry(r, backoffice.ActionExplicitEarn, backoffice.TargetMember, t.MemberID)
	e.ID, e.TxnID, e.Reason = auditID(r, "explicit-earn"), t.ID, reason
	e.After = backoffice.ExplicitEarnFields(t.StoreID, t.Receipt, t.PurchaseAmount, t.Points)
	s.appendAudit(r, e)
}

// The ledger's writer commits the adjustment in its batch; the entry follows
// it, and a retry (answered as a replay) writes it if it is missing.
func (s *Server) auditAdjustment(r *http.Request, res ledger.Result) {
	var t struct {
		ID       string `json:"id"`
		MemberID string `json:"member_id"`
		Points   int64  `json:"points"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal(res.Body, &t); err != nil || t.ID == "" {
		logger(r).Error("audit entry of an adjustment: unreadable answer", "err", err)
		return
	}
	e := auditEntry(r, backoffice.ActionAdjustment, backoffice.TargetMember, t.MemberID)
	e.ID, e.TxnID, e.Reason, e.After = auditID(r, "adjustment"), t.ID, t.Reason, backoffice.AdjustmentFields(t.Points)
	s.appendAudit(r, e)
}
