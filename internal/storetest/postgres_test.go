package storetest

import (
	"context"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
)

// openPostgres opens a store on a fresh schema of the local PostgreSQL. A
// test that cannot reach PostgreSQL fails (pgtest.DSN sees to it): the
// conformance suite is never silently skipped.
func openPostgres(t *testing.T) ledger.Store {
	t.Helper()
	db, err := postgres.Open(context.Background(), pgtest.DSN(t), 4)
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	return db
}

func execPostgres(s ledger.Store, query string, args ...any) error {
	return s.(*postgres.DB).Exec(context.Background(), query, args...)
}

func TestPostgres(t *testing.T) {
	Run(t, openPostgres)
}

func TestPostgresCorruption(t *testing.T) {
	RunCorruption(t, openPostgres, execPostgres)
}

func TestPostgresModel(t *testing.T) {
	RunModel(t, openPostgres, 3000, 2)
}

func TestPostgresBackoffice(t *testing.T) {
	RunBackoffice(t, openPostgres)
}
