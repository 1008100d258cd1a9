package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
	"github.com/pointd/pointd/internal/sqlite"
)

// TestPhoneRekeyAndDuplicates upgrades a folder whose members' numbers were
// stored in the old form (the digits as typed): the first open re-keys them
// to E.164 and says so, pointd members duplicates lists the members who
// turned out to share a number with the merge commands to settle them, and
// after the merge nothing is listed.
func TestPhoneRekeyAndDuplicates(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := privacy.LoadOrCreateKeyFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	phones, err := privacy.New(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.UsePhones(ctx, phones); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	var ms []ledger.Member
	for i, p := range []string{"01012345678", "+821012345678", "821012345678", "+15550001111"} {
		m := ledger.Member{ID: ledger.NewID(), CardNumber: ledger.NewCardNumber(), Phone: p, Name: "member",
			Status: "active", CreatedAt: at.Add(time.Duration(i) * time.Minute)}
		if err := db.CreateMember(ctx, &m); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	db.Close()

	code, out, errOut := runPointd(t, "migrate", "--data", dir)
	if code != 0 || !strings.Contains(out, "phone numbers: 4 read, 2 rewritten in E.164 (region KR)") ||
		!strings.Contains(out, "2 member(s) share a number with an older member: list them with pointd members duplicates") {
		t.Fatalf("migrate: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if code, out, _ := runPointd(t, "migrate", "--data", dir); code != 0 || strings.Contains(out, "phone numbers") {
		t.Fatalf("a second migrate re-keyed again: exit %d\n%s", code, out)
	}

	code, out, errOut = runPointd(t, "members", "duplicates", "--data", dir)
	if code != 0 || !strings.Contains(out, "1 phone number(s) shared") || !strings.Contains(out, "+82 10-****-5678") ||
		strings.Contains(out, "1234-5678") ||
		!strings.Contains(out, "pointd members merge --into "+ms[0].ID+" "+ms[1].ID) ||
		!strings.Contains(out, "pointd members merge --into "+ms[0].ID+" "+ms[2].ID) || strings.Contains(out, ms[3].ID) {
		t.Fatalf("duplicates: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	code, out, errOut = runPointd(t, "members", "duplicates", "--json", "--data", dir)
	var doc struct {
		Groups []duplicateGroup `json:"groups"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Groups) != 1 || len(doc.Groups[0].Members) != 3 ||
		doc.Groups[0].Members[0].ID != ms[0].ID || len(doc.Groups[0].Merge) != 2 {
		t.Fatalf("duplicates --json: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}

	for _, c := range doc.Groups[0].Merge {
		args := append(strings.Fields(strings.TrimPrefix(c, "pointd ")), "--data", dir, "--reason", "one person")
		if code, out, errOut := runPointd(t, args...); code != 0 {
			t.Fatalf("%s: exit %d\nstdout %s\nstderr %s", c, code, out, errOut)
		}
	}
	if code, out, errOut := runPointd(t, "members", "duplicates", "--data", dir); code != 0 || !strings.Contains(out, "no two members share") {
		t.Fatalf("duplicates after the merges: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if code, _, errOut := runPointd(t, "members", "duplicates", "--phone-region", "XX", "--data", dir); code == 0 ||
		!strings.Contains(errOut, "phone-region") || !strings.Contains(errOut, `"XX"`) || !strings.Contains(errOut, "such as KR") {
		t.Fatalf("--phone-region XX: exit %d, stderr %q; want a refusal naming the flag, the value and the form", code, errOut)
	}
	if code, out, errOut := runPointd(t, "verify", "--data", dir); code != 0 {
		t.Fatalf("verify: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}
