package api

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/notice"
)

// Notices: operators publish; everyone reads, from the in-memory
// board, with a strong ETag and a public Cache-Control so that nginx or a
// CDN can answer most reads without reaching pointd at all.

func init() { statusOf[notice.CodeNoticeNotFound] = http.StatusNotFound }

const (
	defaultNoticePage = 20
	maxNoticePage     = 100
	// noticeSWR is the stale-while-revalidate of notice answers: how long a
	// shared cache may answer from an expired copy while it refreshes.
	noticeSWR = 60
)

type noticeRequest struct {
	Title       string  `json:"title"`
	Body        string  `json:"body"`
	ImageURL    string  `json:"image_url"`
	Pinned      *bool   `json:"pinned"`
	PublishAt   *string `json:"publish_at"`
	EndsAt      *string `json:"ends_at"`
	RampSeconds *int64  `json:"ramp_seconds"`
	Audience    string  `json:"audience"`
	MerchantID  string  `json:"merchant_id"`
}

func (s *Server) noticesOff(w http.ResponseWriter, r *http.Request) bool {
	if s.rp.board == nil {
		writeProblem(w, r, ledger.Errorf(codeRouteNotFound, "this server's store keeps no notices"))
		return true
	}
	return false
}

func parseTimeField(field string, v *string) (time.Time, *ledger.Error) {
	if v == nil {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *v)
	if err != nil {
		return time.Time{}, ledger.Invalid(field, "must be an RFC 3339 time such as 2026-12-01T09:00:00Z")
	}
	if t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, ledger.Invalid(field, "must be between the years 2000 and 9999")
	}
	return ledger.MicroTime(t), nil
}

func (s *Server) createNotice(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	var req noticeRequest
	if !s.read(w, r, &req, false) {
		return
	}
	now := ledger.MicroTime(time.Now())
	publish, perr := parseTimeField("publish_at", req.PublishAt)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	if publish.IsZero() {
		publish = now
	}
	ends, perr := parseTimeField("ends_at", req.EndsAt)
	if perr != nil {
		writeProblem(w, r, perr)
		return
	}
	audience := req.Audience
	if audience == "" {
		audience = notice.AudienceAll
		if req.MerchantID != "" {
			audience = notice.AudienceMerchant
		}
	}
	n := notice.Notice{ID: derivedID(r, "notice"), Title: req.Title, Body: req.Body, ImageURL: req.ImageURL,
		Audience: audience, MerchantID: req.MerchantID, PublishAt: publish, EndsAt: ends, CreatedAt: now}
	if req.Pinned != nil {
		n.Pinned = *req.Pinned
	}
	if req.RampSeconds != nil {
		n.RampSeconds = *req.RampSeconds
	}
	if err := n.Validate(); err != nil {
		writeError(w, r, err)
		return
	}
	if !ends.IsZero() && !ends.After(now) {
		writeProblem(w, r, ledger.Invalid("ends_at", "must be in the future"))
		return
	}
	if n.MerchantID != "" {
		if _, err := s.rp.merchants.Get(r.Context(), n.MerchantID); err != nil {
			if ledger.ErrorCode(err) == ledger.CodeMerchantNotFound {
				err = &ledger.Error{Code: ledger.CodeMerchantNotFound, Field: "merchant_id", Message: fmt.Sprintf("no merchant with id %q", n.MerchantID)}
			}
			writeError(w, r, err)
			return
		}
	}
	ns := s.rp.notices
	createOnce(w, r, func(ctx context.Context) (notice.Notice, error) { return ns.Notice(ctx, n.ID) },
		func(ctx context.Context) (notice.Notice, error) {
			if err := ns.CreateNotice(ctx, n); err != nil {
				return n, err
			}
			s.published(ctx)
			return n, nil
		},
		func(prev notice.Notice) bool {
			// What the request said, not when it was sent: a retry may
			// come later with the same body and no publish_at.
			return prev.Title == n.Title && prev.Body == n.Body && prev.ImageURL == n.ImageURL &&
				prev.Pinned == n.Pinned && prev.Audience == n.Audience && prev.MerchantID == n.MerchantID &&
				prev.RampSeconds == n.RampSeconds && prev.EndsAt.Equal(n.EndsAt) &&
				(req.PublishAt == nil || prev.PublishAt.Equal(n.PublishAt))
		})
}

// published reloads this instance's board before the 201 goes out (the
// publisher's next read shows the notice) and tells the other instances.
func (s *Server) published(ctx context.Context) {
	if err := s.rp.board.Reload(ctx); err != nil {
		s.log.Warn("notices: reload after publish failed; the periodic reload will pick it up", "err", err)
	}
	if sh := s.rp.shared; sh != nil {
		if err := sh.Publish(ctx, topicNotices, ""); err != nil {
			s.log.Warn("notices: telling other instances failed; their periodic reload will pick it up", "err", err)
		}
	}
}

// view is the board's current view, loaded on first use.
func (s *Server) view(ctx context.Context) (*notice.View, error) {
	if err := s.rp.board.Ensure(ctx); err != nil {
		s.log.Warn("notices: first load failed", "err", err)
		return nil, &ledger.Error{Code: ledger.CodeUnavailable, RetryAfter: 1, Message: "notices cannot be loaded right now; retry shortly"}
	}
	return s.rp.board.View(), nil
}

// rendered is a notice answer ready to send: the body and its ETag.
type rendered struct {
	body []byte
	etag string
}

func render(v any) (rendered, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return rendered{}, err
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	return rendered{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

func (s *Server) listNotices(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	q := r.URL.Query()
	limit := defaultNoticePage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxNoticePage {
			writeProblem(w, r, ledger.Invalid("limit", "must be an integer from 1 to %d", maxNoticePage))
			return
		}
		limit = n
	}
	merchant := q.Get("merchant_id")
	if len(merchant) > 64 || !printableASCII(merchant) {
		writeProblem(w, r, ledger.Invalid("merchant_id", "is not an id: 1 to 64 printable ASCII characters, no spaces"))
		return
	}
	var after *notice.Cursor
	if c := q.Get("cursor"); c != "" {
		cur, ok := parseNoticeCursor(c)
		if !ok {
			writeProblem(w, r, ledger.Invalid("cursor", "is not a cursor this API gave out"))
			return
		}
		after = &cur
	}
	v, err := s.view(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	build := func() (any, error) {
		items, more := v.List(merchant, after, limit)
		p := page[notice.Notice]{Items: items}
		if p.Items == nil {
			p.Items = []notice.Notice{}
		}
		if more {
			p.NextCursor = makeNoticeCursor(items[len(items)-1])
		}
		return p, nil
	}
	// Only the first page of everyone's list is kept rendered (the one a
	// stampede asks for); a page by cursor or merchant is rendered from
	// memory each time, so that made-up cursors and ids cannot grow the
	// view's memo without bound.
	var out rendered
	if merchant == "" && after == nil {
		out, err = memo(v, "list\x00"+strconv.Itoa(limit), build)
	} else {
		var val any
		if val, err = build(); err == nil {
			out, err = render(val)
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeCacheable(w, r, v, out)
}

func (s *Server) getNotice(w http.ResponseWriter, r *http.Request) {
	if s.noticesOff(w, r) {
		return
	}
	id, ok := pathID(w, r, notice.CodeNoticeNotFound)
	if !ok {
		return
	}
	v, err := s.view(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	n, found := v.Get(id)
	if !found {
		// Scheduled, ended or unknown: the same answer, so that nobody
		// learns of a notice before it is published.
		writeProblem(w, r, ledger.Errorf(notice.CodeNoticeNotFound, "no published notice with id %q", id))
		return
	}
	out, err := memo(v, "one\x00"+id, func() (any, error) { return n, nil })
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.writeCacheable(w, r, v, out)
}

// memo renders once per view and key: a view lasts until the notices
// change, so a surge of identical reads encodes and hashes once.
func memo(v *notice.View, key string, build func() (any, error)) (rendered, error) {
	if got, ok := v.Memo.Load(key); ok {
		return got.(rendered), nil
	}
	val, err := build()
	if err != nil {
		return rendered{}, err
	}
	out, err := render(val)
	if err != nil {
		return rendered{}, err
	}
	v.Memo.Store(key, out)
	return out, nil
}

// writeCacheable answers a public, shared answer: strong ETag, a max-age no
// longer than until the next scheduled change, stale-while-revalidate, and
// 304 to a matching If-None-Match.
func (s *Server) writeCacheable(w http.ResponseWriter, r *http.Request, v *notice.View, out rendered) {
	maxAge := s.cfg.NoticeMaxAge
	if until := time.Until(v.Until); until < maxAge {
		maxAge = max(until, 0)
	}
	h := w.Header()
	// A shared cache keeps the headers with the answer and serves them to
	// everyone: what belongs to this caller's rate limit must not go along.
	for _, k := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		h.Del(k)
	}
	h.Set("ETag", out.etag)
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, stale-while-revalidate=%d", int(maxAge/time.Second), noticeSWR))
	if etagMatch(r.Header.Get("If-None-Match"), out.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(out.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.body)
}

// etagMatch is If-None-Match's weak comparison (RFC 9110 13.1.2): "*", or
// any listed tag equal to ours ignoring a W/ prefix.
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for part := range strings.SplitSeq(header, ",") {
		t := strings.TrimSpace(part)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// Notice cursors are opaque; inside, the sort key of the last notice shown.
func makeNoticeCursor(n notice.Notice) string {
	p := "0"
	if n.Pinned {
		p = "1"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("n" + p + "." + strconv.FormatInt(n.PublishAt.UnixMicro(), 10) + "." + n.ID))
}

func parseNoticeCursor(c string) (notice.Cursor, bool) {
	if len(c) > 200 {
		return notice.Cursor{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return notice.Cursor{}, false
	}
	rest, ok := strings.CutPrefix(string(b), "n")
	if !ok {
		return notice.Cursor{}, false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 || (parts[0] != "0" && parts[0] != "1") || parts[2] == "" {
		return notice.Cursor{}, false
	}
	us, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return notice.Cursor{}, false
	}
	return notice.Cursor{Pinned: parts[0] == "1", PublishAt: time.UnixMicro(us).UTC(), ID: parts[2]}, true
}
