package storetest

import (
	"context"
	"testing"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/sqlite"
)

func openSQLite(t *testing.T) ledger.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	return db
}

func execSQLite(s ledger.Store, query string, args ...any) error {
	return s.(*sqlite.DB).Exec(context.Background(), query, args...)
}

func TestSQLite(t *testing.T) {
	Run(t, openSQLite)
}

func TestSQLiteCorruption(t *testing.T) {
	RunCorruption(t, openSQLite, execSQLite)
}

func TestSQLiteModel(t *testing.T) {
	RunModel(t, openSQLite, 3000, 1)
}

func TestSQLiteBackoffice(t *testing.T) {
	RunBackoffice(t, openSQLite)
}
