package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

func cmdKeysCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keys create", stderr)
	var d dbFlags
	d.register(fs)
	role := fs.String("role", "admin", "admin, viewer (reads everything, changes nothing), pos (a merchant's terminals, needs --merchant) or app (a member app's backend, needs --name)")
	mode := fs.String("mode", "live", "live or test: must match the server's --mode")
	merchant := fs.String("merchant", "", "merchant id (pos keys)")
	store := fs.String("store", "", "store id (optional, confines a pos key to one store)")
	name := fs.String("name", "", "a label for the key")
	if err := parse(fs, args); err != nil {
		return err
	}
	m := auth.Mode(*mode)
	if m != auth.ModeLive && m != auth.ModeTest {
		return fs.bad("mode", "must be live or test")
	}
	r := auth.Role(*role)
	switch {
	case !slices.Contains(keyRoles, r):
		return fs.bad("role", "must be %s", roleList(", ", " or "))
	case r != auth.RolePOS && *merchant != "":
		return fs.bad("merchant", "an %s key belongs to no merchant: drop --merchant", r)
	case r != auth.RolePOS && *store != "":
		return fs.bad("store", "an %s key belongs to no store: drop --store", r)
	case r == auth.RoleApp && strings.TrimSpace(*name) == "":
		return fs.bad("name", "an app key needs a name: the app it belongs to")
	case r == auth.RolePOS && *merchant == "":
		return fmt.Errorf("a pos key needs --merchant")
	}
	db, err := d.open(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()
	if r == auth.RolePOS {
		if _, err := db.Merchant(ctx, *merchant); err != nil {
			return fs.bad("merchant", "%v (the id POST /v1/merchants answered)", err)
		}
		if *store != "" {
			si, err := db.StoreInfo(ctx, *store)
			if err != nil {
				return fs.bad("store", "%v", err)
			}
			if si.MerchantID != *merchant {
				return fs.bad("store", "belongs to another merchant than --merchant %s", *merchant)
			}
		}
	}
	secret, k := auth.NewSecret(m)
	k.ID, k.Role, k.MerchantID, k.StoreID, k.Name = ledger.NewID(), r, *merchant, *store, *name
	if err := db.CreateKey(ctx, k); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created %s %s key %s (id %s); it is shown only this once:\n", m, r, k.Prefix, k.ID)
	fmt.Fprintln(stdout, secret)
	return nil
}

// keyRoles are the roles a stored key may have, in the order usage texts
// list them.
var keyRoles = []auth.Role{auth.RoleAdmin, auth.RoleViewer, auth.RolePOS, auth.RoleApp}

// roleList lists keyRoles: roleList("|", "|") is admin|viewer|pos|app.
func roleList(sep, last string) string {
	var b strings.Builder
	for i, r := range keyRoles {
		switch {
		case i == 0:
		case i == len(keyRoles)-1:
			b.WriteString(last)
		default:
			b.WriteString(sep)
		}
		b.WriteString(string(r))
	}
	return b.String()
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", stderr)
	var d dbFlags
	d.register(fs)
	check := fs.Bool("check", false, "list the migrations that would run, change nothing; exit 3 if any are pending")
	if err := parse(fs, args); err != nil {
		return err
	}
	db, err := d.open(ctx, false)
	if err != nil {
		return err
	}
	defer db.Close()
	if *check {
		pending, err := db.PendingMigrations(ctx)
		if err != nil {
			return err
		}
		if len(pending) == 0 {
			fmt.Fprintf(stdout, "%s: up to date\n", d.describe())
			return nil
		}
		fmt.Fprintf(stdout, "%s: %d pending migration(s):\n", d.describe(), len(pending))
		for _, p := range pending {
			fmt.Fprintln(stdout, "  "+p)
		}
		return exitError(3)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	for _, a := range applied {
		fmt.Fprintln(stdout, "applied "+a)
	}
	if d.phones != nil && len(applied) > 0 {
		if err := d.usePhones(ctx, db); err != nil {
			return err
		}
	}
	d.reportRekey(stdout)
	fmt.Fprintf(stdout, "%s: up to date (%d applied now)\n", d.describe(), len(applied))
	return nil
}

func cmdVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify", stderr)
	var d dbFlags
	d.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	db, err := d.open(ctx, false)
	if err != nil {
		return err
	}
	defer db.Close()
	start := time.Now()
	rep, err := ledger.VerifyStore(ctx, db)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprintf(stdout, "audited %s in %s\n", d.describe(), time.Since(start).Round(time.Millisecond))
		fmt.Fprintf(stdout, "  transactions %d, postings %d, accounts %d (members %d), lots %d, holds %d, chain head %d\n",
			rep.Transactions, rep.Postings, rep.Accounts, rep.Members, rep.Lots, rep.Holds, rep.HeadSeq)
		for _, x := range rep.Discrepancies {
			fmt.Fprintf(stdout, "  DISCREPANCY %s: %s\n", x.Kind, x.Detail)
		}
		if rep.Truncated > 0 {
			fmt.Fprintf(stdout, "  … and %d more discrepancies not listed\n", rep.Truncated)
		}
		if rep.Sound() {
			fmt.Fprintln(stdout, "ledger is sound")
		} else {
			fmt.Fprintf(stdout, "ledger is NOT sound: %d discrepancies\n", len(rep.Discrepancies)+rep.Truncated)
		}
	}
	if !rep.Sound() {
		return exitError(1)
	}
	return nil
}

func cmdExpire(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("expire", stderr)
	var d dbFlags
	d.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	db, err := d.open(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	defer w.Close()
	st, err := ledger.ExpireDue(ctx, db, w, time.Now())
	fmt.Fprintf(stdout, "expired the due lots of %d members and %d holds\n", st.LotMembers, st.Holds)
	return err
}
