// Command pointd is the membership points server and its tools: serve,
// migrate, verify, expire, keys, incident and reconcile. It only wires configuration to the
// packages under internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `pointd — a membership points ledger

usage:
  pointd serve   [--addr HOST:PORT] [--data DIR | --db postgres://…] [--mode live|test]
  pointd keys create --role admin|viewer|pos|app [--merchant ID] [--store ID] [--name N] [--mode live|test] [--data DIR | --db URL]
  pointd migrate [--check] [--data DIR | --db URL]
  pointd verify  [--data DIR | --db URL]
  pointd expire  [--data DIR | --db URL]
  pointd members merge --into A B [--reason R] [--data DIR | --db URL]
  pointd members duplicates [--json] [--data DIR | --db URL]
  pointd incident --from T1 --to T2 [--store ID] [--json] [--data DIR | --db URL]
  pointd reconcile --receipts FILE.csv [--fix OUT] [--json] | --apply FILE  [--data DIR | --db URL]
  pointd surge   --target URL --admin-key KEY | --spawn "SERVE ARGS" | --spawn-data DIR  [--profile steady|launch|badge] [--duration D] [--rate R] [--fault KIND@T[:D]]… [--report FILE.html]

Every flag can also be set as an environment variable: --db-conns is POINTD_DB_CONNS.
Run 'pointd COMMAND --help' for a command's flags.
`

// keysUsage lists every role a key may have (keyRoles).
var keysUsage = "usage: pointd keys create --role " + roleList("|", "|") +
	" [--merchant ID] [--store ID] [--name N] [--mode live|test] [--data DIR | --db URL]\n" +
	"  pos keys need --merchant; app keys need --name\n"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal starts the drain, a second one kills at once.
	context.AfterFunc(ctx, stop)
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "keys":
		if len(args) < 2 || args[1] != "create" {
			fmt.Fprint(stderr, keysUsage)
			return 2
		}
		err = cmdKeysCreate(ctx, args[2:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stdout, stderr)
	case "verify":
		err = cmdVerify(ctx, args[1:], stdout, stderr)
	case "expire":
		err = cmdExpire(ctx, args[1:], stdout, stderr)
	case "members":
		switch {
		case len(args) >= 2 && args[1] == "merge":
			err = cmdMembersMerge(ctx, args[2:], stdout, stderr)
		case len(args) >= 2 && args[1] == "duplicates":
			err = cmdMembersDuplicates(ctx, args[2:], stdout, stderr)
		default:
			fmt.Fprint(stderr, membersMergeUsage+membersDuplicatesUsage)
			return 2
		}
	case "incident", "reconcile":
		err = cmdRepair(ctx, args[0], args[1:], stdout, stderr)
	case "surge":
		err = cmdSurge(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pointd: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ex exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ex):
		return int(ex)
	default:
		fmt.Fprintf(stderr, "pointd %s: %v\n", args[0], err)
		return 1
	}
}

// exitError ends a command with a status and nothing more to say.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }
