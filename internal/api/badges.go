package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// Badges: "is there anything new for me?", asked by every open
// member app every minute or so. The answer comes from memory: the notice
// board, and the member's cached activity and seen time (loaded once, then
// invalidated by the writes that change them). A warm badge read does no
// database work at all (TestBadgesDoNotTouchTheStore).

const (
	// holdWarning: an active hold expiring within this is "about to expire".
	holdWarning = 5 * time.Minute
	// pointsWarning: points expiring within this are "expiring soon".
	pointsWarning = 30 * 24 * time.Hour
)

// badgesResponse is the badge answer.
type badgesResponse struct {
	MemberID string `json:"member_id"`
	// New is whether anything appeared since the member last looked: a
	// notice, a hold entering its last minutes, or points entering their
	// last 30 days.
	New            bool        `json:"new"`
	Notices        noticeBadge `json:"notices"`
	HoldsExpiring  holdsBadge  `json:"holds_expiring"`
	PointsExpiring pointsBadge `json:"points_expiring"`
	SeenAt         *time.Time  `json:"seen_at"`
	PollAfter      int         `json:"poll_after_seconds"`
}

type noticeBadge struct {
	New      int        `json:"new"`
	LatestAt *time.Time `json:"latest_at,omitempty"`
}

type holdsBadge struct {
	Count          int        `json:"count"`
	Points         int64      `json:"points"`
	FirstExpiresAt *time.Time `json:"first_expires_at,omitempty"`
}

type pointsBadge struct {
	Points         int64      `json:"points"`
	FirstExpiresAt *time.Time `json:"first_expires_at,omitempty"`
}

func (s *Server) memberBadges(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	s.badges(w, r, id)
}

// myBadges is GET /v1/me/badges: a member session's own badges.
func (s *Server) myBadges(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	s.badges(w, r, caller(r).MemberID)
}

// myBadgesSeen is POST /v1/me/badges/seen.
func (s *Server) myBadgesSeen(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	s.badgesSeen(w, r, caller(r).MemberID)
}

// badges answers the badges of memberID; the caller has checked that it may
// see them (a member session: its own, /v1/me/badges).
func (s *Server) badges(w http.ResponseWriter, r *http.Request, memberID string) {
	b, err := s.badgeOf(r, memberID, time.Now())
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeBadges(w, b)
}

func (s *Server) badgeOf(r *http.Request, memberID string, now time.Time) (badgesResponse, error) {
	act, err := s.rp.activity.Get(r.Context(), memberID)
	if err != nil {
		return badgesResponse{}, err
	}
	seenUS, err := s.rp.seen.Get(r.Context(), memberID)
	if err != nil {
		return badgesResponse{}, err
	}
	if _, err := s.view(r.Context()); err != nil {
		return badgesResponse{}, err
	}
	var seen time.Time
	out := badgesResponse{MemberID: memberID, PollAfter: int(s.cfg.BadgePoll / time.Second)}
	if seenUS > 0 {
		seen = time.UnixMicro(seenUS).UTC()
		out.SeenAt = &seen
	}
	merchants := make(map[string]bool, len(act.Merchants))
	for _, m := range act.Merchants {
		merchants[m] = true
	}
	nb := s.rp.board.View().NewFor(memberID, merchants, seen, now)
	out.Notices.New = nb.New
	if !nb.Latest.IsZero() {
		t := nb.Latest.UTC()
		out.Notices.LatestAt = &t
	}
	newSince := func(expires time.Time, warn time.Duration) bool { return expires.Add(-warn).After(seen) }
	fresh := nb.New > 0
	for _, h := range act.Holds {
		if h.ExpiresAt.After(now) && h.ExpiresAt.Sub(now) <= holdWarning {
			out.HoldsExpiring.Count++
			out.HoldsExpiring.Points += h.Points
			if out.HoldsExpiring.FirstExpiresAt == nil {
				t := h.ExpiresAt.UTC()
				out.HoldsExpiring.FirstExpiresAt = &t
			}
			fresh = fresh || newSince(h.ExpiresAt, holdWarning)
		}
	}
	for _, l := range act.Lots {
		if l.Remaining > 0 && l.ExpiresAt.Sub(now) <= pointsWarning {
			out.PointsExpiring.Points += l.Remaining
			if out.PointsExpiring.FirstExpiresAt == nil {
				t := l.ExpiresAt.UTC()
				out.PointsExpiring.FirstExpiresAt = &t
			}
			fresh = fresh || newSince(l.ExpiresAt, pointsWarning)
		}
	}
	out.New = fresh
	// A ramped notice due for this member before the next regular poll:
	// ask again right then (each member's moment differs, so this does
	// not bunch the polls).
	if !nb.Next.IsZero() {
		if d := int(nb.Next.Sub(now)/time.Second) + 1; d < out.PollAfter {
			out.PollAfter = max(d, 1)
		}
	}
	// Under load every poll is stretched (Poll-Interval, overload.go): a
	// badge never asks sooner than that, ramp or not.
	if busy := s.pollInterval(); busy > s.calmPollInterval() {
		out.PollAfter = max(out.PollAfter, int(busy/time.Second))
	}
	return out, nil
}

// writeBadges answers privately cacheable (the member's app or browser may
// reuse it until the poll hint), never shared.
func (s *Server) writeBadges(w http.ResponseWriter, b badgesResponse) {
	h := w.Header()
	h.Set(headerPollInterval, strconv.Itoa(b.PollAfter))
	b2, err := json.Marshal(b)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", fmt.Sprintf("private, max-age=%d", b.PollAfter))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(b2, '\n'))
}

type seenRequest struct{}

func (s *Server) memberBadgesSeen(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	id, ok := pathID(w, r, ledger.CodeMemberNotFound)
	if !ok {
		return
	}
	s.badgesSeen(w, r, id)
}

// badgesSeen marks everything up to now seen and answers the badges as they
// are then. It needs no Idempotency-Key: marking seen twice is marking seen.
func (s *Server) badgesSeen(w http.ResponseWriter, r *http.Request, memberID string) {
	var req seenRequest
	if err := decode(r, &req, true); err != nil {
		writeProblem(w, r, err)
		return
	}
	if _, err := s.rp.members.Get(r.Context(), memberID); err != nil {
		writeError(w, r, err)
		return
	}
	now := ledger.MicroTime(time.Now())
	if err := s.rp.seen.Set(r.Context(), memberID, now.UnixMicro()); err != nil {
		writeError(w, r, fmt.Errorf("badges seen: %w", err))
		return
	}
	s.rp.seenQ.add(memberID, now)
	b, err := s.badgeOf(r, memberID, now)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeBadges(w, b)
}
