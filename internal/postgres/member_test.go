package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/privacy"
)

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
	dsn := pgtest.DSN(t)
	db := openOn(t, dsn)
	key := testPhones(t)
	mustOK(t, db.UsePhones(ctx, key))
	f := newFixture(t, db)
	const old = "+33600000077"
	mustOK(t, db.Exec(ctx, `UPDATE members SET phone = $1, phone_enc = NULL, phone_hash = NULL WHERE id = $2`, old, f.bob.ID))

	mustOK(t, db.UsePhones(ctx, key))
	var clear *string
	var enc, hash []byte
	mustOK(t, db.pool.QueryRow(ctx, `SELECT phone, phone_enc, phone_hash FROM members WHERE id = $1`, f.bob.ID).Scan(&clear, &enc, &hash))
	if clear != nil || len(enc) == 0 || !bytes.Equal(hash, key.Index(old)) || bytes.Contains(enc, []byte("600000077")) {
		t.Errorf("after sealing: phone %v, phone_enc %x, phone_hash %x", clear, enc, hash)
	}
	m, err := db.MemberByPhone(ctx, old)
	if err != nil || m.ID != f.bob.ID || m.Phone != old {
		t.Errorf("MemberByPhone = %+v, %v", m, err)
	}
	if m, err := db.Member(ctx, f.alice.ID); err != nil || m.Phone != f.alice.Phone {
		t.Errorf("Member = %+v, %v", m, err)
	}
	// A second start finds nothing left to seal and changes nothing.
	mustOK(t, db.UsePhones(ctx, key))
	if m, err := db.MemberByPhone(ctx, old); err != nil || m.ID != f.bob.ID {
		t.Errorf("after a second start: %+v, %v", m, err)
	}
	if err := db.UsePhones(ctx, testPhones(t)); err == nil {
		t.Error("a key that does not open the stored numbers was accepted")
	}
	if _, err := db.MemberByPhone(ctx, "+33600000078"); ledger.ErrorCode(err) != ledger.CodeMemberNotFound {
		t.Errorf("an unknown phone: %v", err)
	}

	// A tool that opens the database without the key (pointd expire)
	// still moves points: the write path leaves out what it cannot open.
	keyless := openOn(t, dsn)
	mustOK(t, keyless.Write(ctx, func(tx ledger.BatchTx) error {
		if err := tx.(ledger.Prefetcher).Prefetch(ctx, ledger.Prefetch{MemberIDs: []string{f.alice.ID}}); err != nil {
			return err
		}
		ms, err := tx.Members(ctx, []string{f.alice.ID, f.bob.ID})
		if err == nil && (len(ms) != 2 || ms[f.alice.ID].Phone != "" || ms[f.bob.ID].CardNumber != f.bob.CardNumber) {
			t.Errorf("members without the key: %+v", ms)
		}
		return err
	}))
	if _, err := keyless.Member(ctx, f.alice.ID); err == nil {
		t.Error("a read without the key opened a sealed phone")
	}
}
