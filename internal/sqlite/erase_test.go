package sqlite

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

// TestWithdrawLeavesNothingInTheFiles withdraws a member with a name and
// a phone number found nowhere else and reads every file of the data
// folder, byte by byte, for the name (the current one and an earlier one),
// the number, its sealed form and its lookup hash.
func TestWithdrawLeavesNothingInTheFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Neighbours on the same pages, before and after.
	newMember := func(phone, name string) ledger.Member {
		m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: phone, Name: name, Status: "active", CreatedAt: base}
		if err := db.CreateMember(ctx, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for i := range 50 {
		newMember(fmt.Sprintf("+8210%08d", 20000000+i), fmt.Sprintf("Neighbour %d", i))
	}
	const phone, oldName, name = "+821077441199", "Quokkaberg Zyxwvut", "Yzwvx Marmotheim"
	m := newMember(phone, oldName)
	for i := range 50 {
		newMember(fmt.Sprintf("+8210%08d", 30000000+i), fmt.Sprintf("Neighbour %d", 100+i))
	}
	n := name
	if _, err := db.UpdateProfile(ctx, m.ID, member.ProfileUpdate{Name: &n}, base); err != nil {
		t.Fatal(err)
	}
	var sealed, hash []byte
	if err := db.r.QueryRowContext(ctx, `SELECT phone_enc, phone_hash FROM members WHERE id = ?`, m.ID).Scan(&sealed, &hash); err != nil {
		t.Fatal(err)
	}
	if len(sealed) < 16 || len(hash) < 16 {
		t.Fatalf("sealed %x, hash %x: too short to look for", sealed, hash)
	}
	// A login code asked for the number keeps its hash.
	if err := db.CreateOTP(ctx, member.OTP{ID: "o1", PhoneHash: hash, CodeHash: []byte("code"), CreatedAt: base, ExpiresAt: base.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	look := map[string][]byte{
		"the name": []byte(name), "the earlier name": []byte(oldName), "the number": []byte(phone),
		"the national number": []byte("01077441199"), "the sealed number": sealed, "the lookup hash": hash,
	}
	found := func() []string {
		var hits []string
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for what, v := range look {
				if bytes.Contains(b, v) {
					hits = append(hits, what+" in "+d.Name())
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}
	// The search finds what is there: before the withdrawal, all of it.
	// (The number itself is never stored in clear.)
	if hits := found(); len(hits) < 4 {
		t.Fatalf("before the withdrawal only %v found: the search does not see the files", hits)
	}

	if err := db.Withdraw(ctx, m.ID, base.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if hits := found(); len(hits) > 0 {
		t.Errorf("after the withdrawal: %v", hits)
	}
	// Still there after the next writes and the close.
	newMember("+821055551234", "After")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := found(); len(hits) > 0 {
		t.Errorf("after the close: %v", hits)
	}
}
