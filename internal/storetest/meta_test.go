package storetest

import (
	"context"
	"testing"

	"github.com/pointd/pointd/internal/postgres"
	"github.com/pointd/pointd/internal/postgres/pgtest"
	"github.com/pointd/pointd/internal/sqlite"
)

func TestSQLiteMeta(t *testing.T) {
	RunMeta(t, func(t *testing.T) func() MetaStore {
		dir := t.TempDir()
		return func() MetaStore {
			db, err := sqlite.OpenNoMigrate(context.Background(), dir)
			if err != nil {
				t.Fatalf("open sqlite: %v", err)
			}
			return db
		}
	}, func(s MetaStore, q string) error { return s.(*sqlite.DB).Exec(context.Background(), q) })
}

func TestPostgresMeta(t *testing.T) {
	RunMeta(t, func(t *testing.T) func() MetaStore {
		dsn := pgtest.DSN(t)
		return func() MetaStore {
			db, err := postgres.OpenNoMigrate(context.Background(), dsn, 2)
			if err != nil {
				t.Fatalf("open postgres: %v", err)
			}
			return db
		}
	}, func(s MetaStore, q string) error { return s.(*postgres.DB).Exec(context.Background(), q) })
}
