package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/pointd/pointd/internal/backoffice"
	"github.com/pointd/pointd/internal/ledger"
)

const membersMergeUsage = "usage: pointd members merge --into A B [--reason R] [--data DIR | --db URL]\n"

// defaultMergeReason is the reason of a merge given none: the ledger and the
// audit log always say why.
const defaultMergeReason = "one person, two memberships (pointd members merge)"

// cmdMembersMerge moves member B into member A (docs/api.md, "Merging
// members") through the ledger's writer, under the same rules as
// POST /v1/members/{id}/merge: B's balance and open lots go to A in one
// hash-chained transaction, B ends merged, and the merge is written to the
// audit log. Its idempotency key is made of A, B and the reason, so that
// running the same command again answers the same merge instead of
// failing or merging twice.
func cmdMembersMerge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("members merge", stderr)
	var d dbFlags
	d.register(fs)
	into := fs.String("into", "", "id of the member that stays: B's balance, lots, card number and history go to it (required)")
	reason := fs.String("reason", defaultMergeReason, "why the two are one person: kept in the merge transaction and the audit log")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), membersMergeUsage)
		fs.printDefaults()
	}
	from, err := parseWithOne(fs, args, "B, the id of the member to merge")
	if err != nil {
		return err
	}
	if *into == "" {
		fs.Usage()
		return errors.New("--into A is required: the id of the member that stays")
	}
	if strings.TrimSpace(*reason) == "" {
		return fs.bad("reason", "must say why the two are one person")
	}
	db, err := d.open(ctx, true)
	if err != nil {
		return err
	}
	defer db.Close()

	if _, err := db.Member(ctx, *into); err != nil {
		return fs.bad("into", "%v", err)
	}
	// What B is before, for the audit log and to say what moved.
	before, err := db.Member(ctx, from)
	if err != nil {
		return fmt.Errorf("member to merge (B): %w", err)
	}
	lots, err := db.MemberLots(ctx, from)
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(*reason))
	key := "cli-merge:" + from + ">" + *into + ":" + hex.EncodeToString(sum[:8])
	w := ledger.NewWriter(db, ledger.WriterConfig{})
	defer w.Close()
	res, err := w.Submit(ctx, ledger.Op{Kind: ledger.OpMerge, Actor: ledger.Actor{KeyID: cliActor}, IdempotencyKey: key,
		MemberID: *into, FromMemberID: from, Reason: *reason})
	if err != nil {
		return err
	}
	var resp ledger.Response
	if err := json.Unmarshal(res.Body, &resp); err != nil {
		return fmt.Errorf("the merge committed but its answer is unreadable: %w", err)
	}
	if office, ok := db.(interface {
		AppendAudit(context.Context, backoffice.Entry) error
	}); ok {
		e := backoffice.Entry{ID: uuid.NewSHA1(uuid.NameSpaceOID, []byte("pointd cli audit\x00"+key)).String(),
			At: ledger.MicroTime(time.Now()), ActorPrefix: cliActorName(), Action: backoffice.ActionMemberMerge,
			TargetType: backoffice.TargetMember, TargetID: from, TxnID: resp.ID, Reason: resp.Reason,
			After: backoffice.MergeFields(resp.MemberID, resp.Points)}
		if !res.Replayed {
			e.Before = backoffice.MemberFields(before, false)
		}
		if err := office.AppendAudit(ctx, e); err != nil {
			return fmt.Errorf("merged (transaction %s), but the audit entry was not written: %w; run the same command again to write it", resp.ID, err)
		}
	}
	if res.Replayed {
		fmt.Fprintf(stdout, "member %s was already merged into %s by this command (transaction %s); nothing changed\n", from, *into, resp.ID)
		return nil
	}
	fmt.Fprintf(stdout, "merged member %s into %s: %d points and %d open lots moved (transaction %s, seq %d)\n",
		from, *into, resp.Points, len(lots), resp.ID, resp.Seq)
	fmt.Fprintf(stdout, "member %s now has %d points (%d held, %d available); %s's card number finds it\n",
		*into, resp.Balance, resp.Held, resp.Available, from)
	return nil
}

// cliActor is the idempotency scope of what the command line submits, as
// an API key is of what its requests submit.
const cliActor = "cli"

// cliActorName is who the audit log says acted: the command line and the
// system user that ran it.
func cliActorName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// parseWithOne parses flags that may come before or after exactly one
// positional argument (what names it, for the message when it is missing).
func parseWithOne(fs *flagSet, args []string, what string) (string, error) {
	if err := fs.parseEnv(); err != nil {
		return "", err
	}
	var pos []string
	for {
		if err := fs.parseArgs(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(pos) {
	case 0:
		fs.Usage()
		return "", fmt.Errorf("missing %s", what)
	case 1:
		return pos[0], nil
	}
	return "", fmt.Errorf("unexpected argument %q: give one %s", pos[1], what)
}
