package api

import (
	"encoding/binary"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

type earnRequest struct {
	MemberID       string `json:"member_id"`
	CardNumber     string `json:"card_number"`
	MemberCode     string `json:"member_code"`
	StoreID        string `json:"store_id"`
	Receipt        string `json:"receipt"`
	PurchaseAmount *int64 `json:"purchase_amount"`
	Points         *int64 `json:"points"`
	// Reason is required with Points, and only then: it goes into the
	// audit entry such an earn writes.
	Reason string `json:"reason"`
}

type redeemRequest struct {
	MemberID   string `json:"member_id"`
	CardNumber string `json:"card_number"`
	MemberCode string `json:"member_code"`
	StoreID    string `json:"store_id"`
	Receipt    string `json:"receipt"`
	Points     *int64 `json:"points"`
}

type holdRequest struct {
	MemberID         string `json:"member_id"`
	CardNumber       string `json:"card_number"`
	MemberCode       string `json:"member_code"`
	StoreID          string `json:"store_id"`
	Points           *int64 `json:"points"`
	ExpiresInSeconds *int64 `json:"expires_in_seconds"`
}

type captureRequest struct {
	Points *int64 `json:"points"`
}

type cancelRequest struct {
	TransactionID  string `json:"transaction_id"`
	Points         *int64 `json:"points"`
	PurchaseAmount *int64 `json:"purchase_amount"`
}

type adjustRequest struct {
	MemberID   string `json:"member_id"`
	CardNumber string `json:"card_number"`
	Points     *int64 `json:"points"`
	Reason     string `json:"reason"`
}

type voidRequest struct{}

func (s *Server) earn(w http.ResponseWriter, r *http.Request) {
	var req earnRequest
	if !s.read(w, r, &req, false) {
		return
	}
	op := ledger.Op{Kind: ledger.OpEarn, StoreID: s.storeOf(r, req.StoreID), Receipt: req.Receipt,
		PurchaseAmount: req.PurchaseAmount, Points: req.Points}
	if req.Points == nil || *req.Points < 0 || *req.Points > ledger.MaxPoints {
		// Without points (or with points the ledger refuses as such) a
		// reason has nothing to explain.
		if req.Points == nil && req.Reason != "" {
			writeProblem(w, r, ledger.Invalid("reason", "goes only with points: an earn by the merchant's rate needs none"))
			return
		}
		s.submit(w, r, op, memberRef{req.MemberID, req.CardNumber, req.MemberCode})
		return
	}
	// Explicit points are an adjustment in all but name: said why, and
	// audited like one.
	if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 500 || checkText("reason", req.Reason) != nil {
		writeProblem(w, r, ledger.Invalid("reason", "is required with points: why this earn does not follow the merchant's rate (at most 500 bytes, no control characters)"))
		return
	}
	op.Reason = req.Reason
	s.submit(w, r, op, memberRef{req.MemberID, req.CardNumber, req.MemberCode}, func(r *http.Request, res ledger.Result) {
		s.auditExplicitEarn(r, res, req.Reason)
	})
}

func (s *Server) redeem(w http.ResponseWriter, r *http.Request) {
	var req redeemRequest
	if !s.read(w, r, &req, false) {
		return
	}
	op := ledger.Op{Kind: ledger.OpRedeem, StoreID: s.storeOf(r, req.StoreID), Receipt: req.Receipt, Points: req.Points}
	s.submit(w, r, op, memberRef{req.MemberID, req.CardNumber, req.MemberCode})
}

func (s *Server) hold(w http.ResponseWriter, r *http.Request) {
	var req holdRequest
	if !s.read(w, r, &req, false) {
		return
	}
	op := ledger.Op{Kind: ledger.OpHold, StoreID: s.storeOf(r, req.StoreID), Points: req.Points}
	if req.ExpiresInSeconds != nil {
		if *req.ExpiresInSeconds < 1 || *req.ExpiresInSeconds > ledger.MaxHoldSeconds {
			writeProblem(w, r, ledger.Invalid("expires_in_seconds", "must be between 1 and %d", ledger.MaxHoldSeconds))
			return
		}
		op.HoldSeconds = *req.ExpiresInSeconds
	}
	s.submit(w, r, op, memberRef{req.MemberID, req.CardNumber, req.MemberCode})
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request) {
	var req captureRequest
	id, ok := pathID(w, r, ledger.CodeHoldNotFound)
	if !ok || !s.read(w, r, &req, true) {
		return
	}
	s.submit(w, r, ledger.Op{Kind: ledger.OpCapture, HoldID: id, Points: req.Points}, memberRef{})
}

func (s *Server) void(w http.ResponseWriter, r *http.Request) {
	var req voidRequest
	id, ok := pathID(w, r, ledger.CodeHoldNotFound)
	if !ok || !s.read(w, r, &req, true) {
		return
	}
	s.submit(w, r, ledger.Op{Kind: ledger.OpVoid, HoldID: id}, memberRef{})
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	var req cancelRequest
	if !s.read(w, r, &req, false) {
		return
	}
	s.submit(w, r, ledger.Op{Kind: ledger.OpCancel, TransactionID: req.TransactionID,
		Points: req.Points, PurchaseAmount: req.PurchaseAmount}, memberRef{})
}

func (s *Server) adjust(w http.ResponseWriter, r *http.Request) {
	var req adjustRequest
	if !s.read(w, r, &req, false) {
		return
	}
	s.submit(w, r, ledger.Op{Kind: ledger.OpAdjust, Points: req.Points, Reason: req.Reason}, memberRef{ID: req.MemberID, Card: req.CardNumber},
		s.auditAdjustment)
}

// read checks the Idempotency-Key header and decodes the body.
func (s *Server) read(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) bool {
	if r.Header.Get(headerIdempotencyKey) == "" {
		writeProblem(w, r, &ledger.Error{Code: codeIdemKeyMissing, Field: headerIdempotencyKey,
			Message: "every request that changes points needs an Idempotency-Key header: a unique value per operation, sent again unchanged on every retry"})
		return false
	}
	if k := r.Header.Get(headerIdempotencyKey); len(k) > 255 || !printableASCII(k) {
		writeProblem(w, r, ledger.Invalid(headerIdempotencyKey, "must be 1 to 255 printable ASCII characters, no spaces (a UUID is best)"))
		return false
	}
	if err := decode(r, dst, allowEmpty); err != nil {
		writeProblem(w, r, err)
		return false
	}
	return true
}

// pathID reads the {id} of the path. An id pointd could never have made
// (too long, not printable ASCII) names nothing: it is answered as not found
// without asking the database, which would refuse some bytes with an error.
func pathID(w http.ResponseWriter, r *http.Request, notFound string) (string, bool) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 || !printableASCII(id) {
		writeProblem(w, r, ledger.Errorf(notFound, "no such id"))
		return "", false
	}
	return id, true
}

// storeOf defaults the store to the one a store-bound key belongs to.
func (s *Server) storeOf(r *http.Request, storeID string) string {
	if storeID == "" {
		return caller(r).StoreID
	}
	return storeID
}

// submit resolves the member, hands op to the batched writer and answers
// 201 with the committed transaction, or the original answer on a replay.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, op ledger.Op, who memberRef, then ...func(*http.Request, ledger.Result)) {
	k := caller(r)
	op.Actor = ledger.Actor{KeyID: k.IdempotencyScope()}
	if k.Role != auth.RoleAdmin {
		op.Actor.MerchantID, op.Actor.StoreID = k.MerchantID, k.StoreID
	}
	op.IdempotencyKey = r.Header.Get(headerIdempotencyKey)
	if op.Kind == ledger.OpEarn || op.Kind == ledger.OpRedeem || op.Kind == ledger.OpHold || op.Kind == ledger.OpAdjust {
		id, err := s.resolveMember(r, op, who)
		if err != nil {
			writeError(w, r, err)
			return
		}
		op.MemberID = id
	}
	res, err := s.writer.Submit(r.Context(), op)
	if err != nil {
		writeError(w, r, err)
		return
	}
	for _, f := range then {
		f(r, res)
	}
	if res.Replayed {
		w.Header().Set(headerReplayed, "true")
	}
	writeRaw(w, http.StatusCreated, res.Body)
}

// memberID takes member_id or card_number (exactly one).
func (s *Server) memberID(r *http.Request, memberID, card string) (string, error) {
	switch {
	case memberID != "" && card != "":
		return "", ledger.Invalid("card_number", "give member_id or card_number, not both")
	case memberID != "" && ledger.ValidCardNumber(memberID):
		// pointd's member ids are UUIDs: 16 digits with a valid check
		// digit are the card printed on the member's card, sent in the
		// wrong field.
		return "", ledger.Invalid("member_id", "is a card number, not a member id: send it as card_number")
	case memberID != "":
		return memberID, nil
	case card == "":
		return "", ledger.Invalid("member_id", "member_id or card_number is required")
	}
	if !ledger.ValidCardNumber(card) {
		return "", ledger.Invalid("card_number", "is not a valid card number (16 digits with a check digit)")
	}
	m, err := s.store.MemberByCard(r.Context(), card)
	if err != nil {
		return "", err
	}
	return m.ID, nil
}

func (s *Server) getTransaction(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeTransactionNotFound)
	if !ok {
		return
	}
	t, err := s.store.Transaction(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if k := caller(r); !seesAll(k) && t.MerchantID != k.MerchantID {
		// Another merchant's transaction does not exist as far as this key knows.
		writeProblem(w, r, ledger.Errorf(ledger.CodeTransactionNotFound, "no transaction with id %q", t.ID))
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) getHold(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeHoldNotFound)
	if !ok {
		return
	}
	h, err := s.store.Hold(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if k := caller(r); !seesAll(k) && h.MerchantID != k.MerchantID {
		writeProblem(w, r, ledger.Errorf(ledger.CodeHoldNotFound, "no hold with id %q", h.ID))
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) getBalance(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	b, err := s.rp.balances.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, b)
}

type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

const (
	defaultPageSize = 50
	maxPageSize     = 200
)

// historyPage reads a history page's limit and cursor (a transaction seq:
// the page holds those before it; 0 for the first page).
func (s *Server) historyPage(q url.Values, purpose string) (before int64, limit int, err *ledger.Error) {
	limit = defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, cerr := strconv.Atoi(v)
		if cerr != nil || n < 1 || n > maxPageSize {
			return 0, 0, ledger.Invalid("limit", "must be an integer from 1 to %d", maxPageSize)
		}
		limit = n
	}
	if c := q.Get("cursor"); c != "" {
		n, ok := s.parseCursor(purpose, c)
		if !ok {
			return 0, 0, ledger.Invalid("cursor", "is not a cursor this API gave out for this list (cursors are opaque; pass next_cursor as it came)")
		}
		before = n
	}
	return before, limit, nil
}

func (s *Server) listTransactions(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	q := r.URL.Query()
	before, limit, perr := s.historyPage(q, historyPurpose(caller(r), id))
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	if _, err := s.rp.members.Get(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := s.history(r, id, before, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

// history reads one page of a member's transactions, newest first. A pos key
// sees only its own merchant's: a coalition shares members and balances, not
// what they bought elsewhere. Filtering can leave a page short (even empty,
// with a cursor to go on) when the member mostly shops elsewhere; the number
// of rows read for one page is bounded.
func (s *Server) history(r *http.Request, memberID string, before int64, limit int) (page[ledger.Transaction], error) {
	k := caller(r)
	mine := func(t ledger.Transaction) bool { return seesAll(k) || t.MerchantID == k.MerchantID }
	const maxReads = 8
	var items []ledger.Transaction
	next, more := before, true
	for reads := 0; more && len(items) <= limit && reads < maxReads; reads++ {
		txns, err := s.store.MemberTransactions(r.Context(), memberID, next, limit+1)
		if err != nil {
			return page[ledger.Transaction]{}, err
		}
		more = len(txns) == limit+1
		for _, t := range txns {
			next = t.Seq
			if mine(t) {
				items = append(items, t)
				if len(items) > limit {
					break
				}
			}
		}
	}
	purpose := historyPurpose(k, memberID)
	p := limitPage(items, limit, s.txnCursor(purpose))
	if len(items) <= limit && more {
		p.NextCursor = s.makeCursor(purpose, next) // read as far as allowed; go on from there
	}
	return p, nil
}

func (s *Server) listLots(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	if _, err := s.rp.members.Get(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	lots, err := s.store.MemberLots(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	type lotJSON struct {
		ID        string `json:"id"`
		Points    int64  `json:"points"`
		Remaining int64  `json:"remaining"`
		ExpiresAt string `json:"expires_at"`
	}
	// A pos key sees its own merchant's lots; of the rest only their sum,
	// without the ids (other merchants' transactions) or the expiry dates
	// (which tell when the member shopped there).
	type lotsPage struct {
		Items       []lotJSON `json:"items"`
		OtherPoints *int64    `json:"other_points,omitempty"`
	}
	k := caller(r)
	out := lotsPage{Items: []lotJSON{}}
	var other int64
	for _, l := range lots {
		if !seesAll(k) && l.MerchantID != k.MerchantID {
			other += l.Remaining
			continue
		}
		out.Items = append(out.Items, lotJSON{l.ID, l.Points, l.Remaining, l.ExpiresAt.Format("2006-01-02T15:04:05.999999Z07:00")})
	}
	if !seesAll(k) {
		out.OtherPoints = &other
	}
	writeJSON(w, http.StatusOK, out)
}

// Cursors of ledger positions (histories, the audit log) are sealed
// (privacy.Tokens): a client can neither read the seq inside — a pos key
// would learn how far other merchants' transactions reach — nor make one
// up. Each is bound to the list it pages (purpose), and its content is
// versioned: cursorV1, then the seq to go on below, big-endian.
const cursorV1 byte = 1

func (s *Server) makeCursor(purpose string, seq int64) string {
	b := make([]byte, 9)
	b[0] = cursorV1
	binary.BigEndian.PutUint64(b[1:], uint64(seq))
	return s.cfg.Tokens.Seal(purpose, b)
}

func (s *Server) parseCursor(purpose, c string) (int64, bool) {
	b, ok := s.cfg.Tokens.Open(purpose, c)
	if !ok || len(b) != 9 || b[0] != cursorV1 {
		return 0, false
	}
	n := int64(binary.BigEndian.Uint64(b[1:]))
	return n, n > 0
}

// txnCursor is the cursor that goes on below a transaction.
func (s *Server) txnCursor(purpose string) func(ledger.Transaction) string {
	return func(t ledger.Transaction) string { return s.makeCursor(purpose, t.Seq) }
}

// historyPurpose is what a member's history cursor is bound to: the member
// and what the caller sees of it (every merchant's transactions, or one
// merchant's), so a cursor is good only for the list that gave it out.
func historyPurpose(k auth.Key, memberID string) string {
	scope := "*"
	switch {
	case k.Role == auth.RoleMember:
		scope = "me"
	case !seesAll(k):
		scope = "merchant:" + k.MerchantID
	}
	return "history\x00" + memberID + "\x00" + scope
}
