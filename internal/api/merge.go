package api

import (
	"encoding/json"
	"net/http"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

type mergeRequest struct {
	FromMemberID string `json:"from_member_id"`
	Reason       string `json:"reason"`
}

// mergeResponse is the member merged into, as it is now, and the merge's
// ledger answer (the transaction and the member's balances right after
// it), which a replay answers unchanged.
type mergeResponse struct {
	Member      ledger.Member   `json:"member"`
	Transaction json.RawMessage `json:"transaction"`
}

// mergeMember answers POST /v1/members/{id}/merge: the member
// from_member_id moves into {id} through the ledger's writer (its balance
// and open lots, in one transaction of the hash chain), and the merge is
// written to the audit log.
func (s *Server) mergeMember(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	var req mergeRequest
	if !ok || !s.read(w, r, &req, false) {
		return
	}
	if err := checkText("reason", req.Reason); err != nil {
		writeProblem(w, r, err)
		return
	}
	k := caller(r)
	op := ledger.Op{Kind: ledger.OpMerge, Actor: ledger.Actor{KeyID: k.IdempotencyScope()}, IdempotencyKey: r.Header.Get(headerIdempotencyKey),
		MemberID: id, FromMemberID: req.FromMemberID, Reason: req.Reason}
	// What the merged member was, for the audit entry's before (a replay
	// finds it merged already and writes no second entry).
	var before json.RawMessage
	if op.FromMemberID != "" && op.FromMemberID != id {
		if m, err := s.store.Member(r.Context(), op.FromMemberID); err == nil {
			before = backoffice.MemberFields(m, false)
		}
	}
	res, err := s.writer.Submit(r.Context(), op)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.auditMerge(r, res, before)
	// Both rows changed (the merged one's status, and the balance of the
	// other, which the writer already invalidated): no cache may answer
	// the old merged member, whose sessions the merge revoked.
	s.forgetMember(r, op.FromMemberID)
	s.forgetMember(r, id)
	m, err := s.store.Member(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	m.Phone = privacy.Mask(m.Phone)
	if res.Replayed {
		w.Header().Set(headerReplayed, "true")
	}
	writeJSON(w, http.StatusCreated, mergeResponse{Member: m, Transaction: res.Body})
}

// auditMerge records a merge against the merged member, linked to its
// ledger transaction. Like an adjustment's, the entry follows the commit,
// and a retry (answered as a replay) writes it if it is missing.
func (s *Server) auditMerge(r *http.Request, res ledger.Result, before json.RawMessage) {
	var t struct {
		ID       string `json:"id"`
		MemberID string `json:"member_id"`
		RefID    string `json:"ref_id"`
		Points   int64  `json:"points"`
		Reason   string `json:"reason"`
	}
	if err := json.Unmarshal(res.Body, &t); err != nil || t.ID == "" {
		logger(r).Error("audit entry of a merge: unreadable answer", "err", err)
		return
	}
	e := auditEntry(r, backoffice.ActionMemberMerge, backoffice.TargetMember, t.RefID)
	e.ID, e.TxnID, e.Reason = auditID(r, "merge"), t.ID, t.Reason
	e.Before, e.After = before, backoffice.MergeFields(t.MemberID, t.Points)
	s.appendAudit(r, e)
}
