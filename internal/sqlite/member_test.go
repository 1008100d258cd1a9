package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
	"github.com/pointd/pointd/internal/privacy"
)

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testPhones(t *testing.T) *privacy.Phones {
	t.Helper()
	k := make([]byte, privacy.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	p, err := privacy.New(k)
	mustOK(t, err)
	return p
}

// TestUsePhonesSealsOldRows: a row written before migration 00030 (phone in
// clear) is sealed when pointd opens the database with its key, and found
// by phone after; a different key is then refused.
func TestUsePhonesSealsOldRows(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	key := testPhones(t)
	mustOK(t, db.UsePhones(ctx, key))
	alice := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: "+33600000001", Name: "Alice", Status: "active", CreatedAt: base}
	mustOK(t, db.CreateMember(ctx, &alice))
	bob := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Name: "Bob", Status: "active", CreatedAt: base}
	mustOK(t, db.CreateMember(ctx, &bob))
	const old = "+33600000077"
	mustOK(t, db.Exec(ctx, `UPDATE members SET phone = ?, phone_enc = NULL, phone_hash = NULL WHERE id = ?`, old, bob.ID))

	mustOK(t, db.UsePhones(ctx, key))
	var clear *string
	var enc, hash []byte
	mustOK(t, db.r.QueryRowContext(ctx, `SELECT phone, phone_enc, phone_hash FROM members WHERE id = ?`, bob.ID).Scan(&clear, &enc, &hash))
	if clear != nil || len(enc) == 0 || !bytes.Equal(hash, key.Index(old)) || bytes.Contains(enc, []byte("600000077")) {
		t.Errorf("after sealing: phone %v, phone_enc %x, phone_hash %x", clear, enc, hash)
	}
	m, err := db.MemberByPhone(ctx, old)
	if err != nil || m.ID != bob.ID || m.Phone != old {
		t.Errorf("MemberByPhone = %+v, %v", m, err)
	}
	if m, err := db.Member(ctx, alice.ID); err != nil || m.Phone != alice.Phone {
		t.Errorf("Member = %+v, %v", m, err)
	}
	// A second start finds nothing left to seal and changes nothing.
	mustOK(t, db.UsePhones(ctx, key))
	if m, err := db.MemberByPhone(ctx, old); err != nil || m.ID != bob.ID {
		t.Errorf("after a second start: %+v, %v", m, err)
	}
	if err := db.UsePhones(ctx, testPhones(t)); err == nil {
		t.Error("a key that does not open the stored numbers was accepted")
	}
	if _, err := db.MemberByPhone(ctx, "+33600000078"); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("an unknown phone: %v", err)
	}
}

// TestHistoryDateRanges checks History's date filter, which narrows by seq
// through the created_at index, against the plain definition, on times
// that are out of order by up to 25 s (several writers' clocks).
func TestHistoryDateRanges(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mustOK(t, db.Exec(ctx, `
		WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 600)
		INSERT INTO transactions (seq, id, type, member_id, merchant_id, store_id, receipt, points, created_at, hash)
		SELECT i, 'txn-' || i, CASE WHEN i % 3 = 0 THEN 'redeem' ELSE 'earn' END, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END,
		       'm', 's', 'R' || i, 1, ? + (i * 10 + ((i * 37) % 11 - 5) * 5) * 1000000, x'00'
		FROM g`, base.UnixMicro()))
	all, err := db.History(ctx, "a", member.HistoryFilter{}, 0, 0)
	mustOK(t, err)
	if len(all) != 300 {
		t.Fatalf("%d transactions of a", len(all))
	}
	checkRanges(t, all, base, func(f member.HistoryFilter, before int64, limit int) ([]ledger.Transaction, error) {
		return db.History(ctx, "a", f, before, limit)
	})
}

// checkRanges pages through many date ranges and type filters and compares
// with filtering all by hand.
func checkRanges(t *testing.T, all []ledger.Transaction, base time.Time,
	history func(member.HistoryFilter, int64, int) ([]ledger.Transaction, error)) {
	t.Helper()
	for _, from := range []int{-1, 0, 7, 95, 400, 2990, 6100} {
		for _, to := range []int{-1, 3, 95, 96, 1000, 3001, 7000} {
			for _, types := range [][]ledger.TxType{nil, {ledger.TxRedeem}} {
				f := member.HistoryFilter{Types: types}
				if from >= 0 {
					f.From = base.Add(time.Duration(from) * time.Second)
				}
				if to >= 0 {
					f.To = base.Add(time.Duration(to) * time.Second)
				}
				var want []string
				for _, tx := range all {
					if (f.From.IsZero() || !tx.CreatedAt.Before(f.From)) && (f.To.IsZero() || tx.CreatedAt.Before(f.To)) &&
						(types == nil || tx.Type == types[0]) {
						want = append(want, tx.ID)
					}
				}
				var got []string
				before := int64(0)
				for {
					page, err := history(f, before, 7)
					mustOK(t, err)
					for _, tx := range page {
						got = append(got, tx.ID)
					}
					if len(page) < 7 {
						break
					}
					before = page[len(page)-1].Seq
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("from %d to %d types %v: got %d transactions, want %d", from, to, types, len(got), len(want))
				}
			}
		}
	}
}

func TestPurgeOldCodesAndSessions(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	old, recent := now.Add(-48*time.Hour), now.Add(-time.Hour)
	for i, at := range []time.Time{old, recent} {
		mustOK(t, db.CreateOTP(ctx, member.OTP{ID: fmt.Sprint("otp-", i), PhoneHash: []byte{byte(i)}, CodeHash: []byte{1},
			CreatedAt: at, ExpiresAt: at.Add(5 * time.Minute)}))
		mustOK(t, db.CreateSession(ctx, member.Session{ID: fmt.Sprint("s-expired-", i), Hash: []byte{2, byte(i)}, Prefix: "pd_ses_live_x",
			MemberID: "m", Mode: "live", CreatedAt: at.Add(-time.Hour), ExpiresAt: at}))
	}
	mustOK(t, db.CreateSession(ctx, member.Session{ID: "s-revoked", Hash: []byte{3}, Prefix: "pd_ses_live_x",
		MemberID: "m", Mode: "live", CreatedAt: old, ExpiresAt: now.Add(time.Hour)}))
	mustOK(t, db.RevokeSession(ctx, "s-revoked", old))
	mustOK(t, db.CreateSession(ctx, member.Session{ID: "s-live", Hash: []byte{4}, Prefix: "pd_ses_live_x",
		MemberID: "m", Mode: "live", CreatedAt: old, ExpiresAt: now.Add(time.Hour)}))

	n, err := db.Purge(ctx, now.Add(-24*time.Hour))
	mustOK(t, err)
	if n != 3 {
		t.Errorf("purged %d rows, want 3 (an old code, a session expired long ago, one revoked long ago)", n)
	}
	if _, err := db.LatestOTP(ctx, []byte{0}); err != member.ErrNoOTP {
		t.Errorf("the old code: %v", err)
	}
	if o, err := db.LatestOTP(ctx, []byte{1}); err != nil || o.ID != "otp-1" {
		t.Errorf("the recent code: %+v, %v", o, err)
	}
	for _, h := range [][]byte{{2, 1}, {4}} {
		if _, err := db.SessionByHash(ctx, h); err != nil {
			t.Errorf("session %x: %v", h, err)
		}
	}
}
