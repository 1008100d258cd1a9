package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pointd/pointd/internal/privacy"
)

const membersDuplicatesUsage = "usage: pointd members duplicates [--json] [--data DIR | --db URL --data-key KEY]\n"

// duplicateMember is one member of a group that shares a phone number, as
// the command prints it: enough to decide which to keep, nothing more of
// the person than a masked number.
type duplicateMember struct {
	ID         string    `json:"id"`
	CardNumber string    `json:"card_number"`
	Name       string    `json:"name"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	Balance    int64     `json:"balance"`
	Held       int64     `json:"held"`
}

type duplicateGroup struct {
	Phone   string            `json:"phone"` // masked
	Members []duplicateMember `json:"members"`
	// Merge is the command that keeps the oldest member (the one the
	// number finds) and moves each other one into it.
	Merge []string `json:"merge"`
}

// cmdMembersDuplicates lists the members that turned out to share one phone
// number when numbers were re-keyed to E.164. Nothing was merged: the
// oldest keeps the number and each other one waits here for an operator,
// because only a person can tell two memberships of one person from a
// number handed on.
func cmdMembersDuplicates(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("members duplicates", stderr)
	var d dbFlags
	d.register(fs)
	asJSON := fs.Bool("json", false, "print the groups as one JSON document")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), membersDuplicatesUsage)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := d.validate(); err != nil {
		return err
	}
	if d.db != "" && d.dataKey == "" {
		return errors.New("--data-key (or POINTD_DATA_KEY) is required with PostgreSQL: the phone numbers are sealed with it")
	}
	db, err := d.open(ctx, readExisting)
	if err != nil {
		return err
	}
	defer db.Close()
	if pending, err := db.PendingMigrations(ctx); err != nil {
		return err
	} else if len(pending) > 0 {
		return fmt.Errorf("%s has %d pending migration(s): run pointd migrate (or start pointd serve) first", d.describe(), len(pending))
	}
	groups, normalized, err := db.PhoneDuplicates(ctx)
	if err != nil {
		return err
	}
	if !normalized {
		return errors.New("phone numbers have not been re-keyed to E.164 on this database yet: run pointd migrate with its data key first")
	}
	out := make([]duplicateGroup, 0, len(groups))
	for _, g := range groups {
		dg := duplicateGroup{Phone: privacy.Mask(g[0].Phone)}
		for i, m := range g {
			b, err := db.Balance(ctx, m.ID)
			if err != nil {
				return err
			}
			dg.Members = append(dg.Members, duplicateMember{ID: m.ID, CardNumber: m.CardNumber, Name: m.Name,
				Status: m.Status, CreatedAt: m.CreatedAt, Balance: b.Balance, Held: b.Held})
			if i > 0 {
				dg.Merge = append(dg.Merge, "pointd members merge --into "+g[0].ID+" "+m.ID)
			}
		}
		out = append(out, dg)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Groups []duplicateGroup `json:"groups"`
		}{out})
	}
	if len(out) == 0 {
		fmt.Fprintln(stdout, "no two members share a phone number")
		return nil
	}
	fmt.Fprintf(stdout, "%d phone number(s) shared by more than one member; the first of each is the oldest, and the one the number finds:\n", len(out))
	for _, g := range out {
		fmt.Fprintf(stdout, "\n%s\n", g.Phone)
		for _, m := range g.Members {
			fmt.Fprintf(stdout, "  %s  card %s  %-8s  joined %s  balance %d (held %d)  %s\n", m.ID, m.CardNumber, m.Status,
				m.CreatedAt.UTC().Format(time.DateOnly), m.Balance, m.Held, m.Name)
		}
		for _, c := range g.Merge {
			fmt.Fprintf(stdout, "  if they are one person: %s --reason \"...\"\n", c)
		}
	}
	return nil
}
