package storetest

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

func TestSQLiteMember(t *testing.T) {
	RunMember(t, openSQLite, func(s ledger.Store, q string, args ...any) error {
		for i, a := range args {
			if at, ok := a.(time.Time); ok {
				args[i] = at.UnixMicro() // SQLite keeps times as microseconds
			}
		}
		return execSQLite(s, q, args...)
	})
}

func TestPostgresMember(t *testing.T) {
	RunMember(t, openPostgres, func(s ledger.Store, q string, args ...any) error {
		var b strings.Builder
		n := 0
		for _, r := range q {
			if r == '?' {
				n++
				b.WriteString("$" + strconv.Itoa(n))
				continue
			}
			b.WriteRune(r)
		}
		return execPostgres(s, b.String(), args...)
	})
}
