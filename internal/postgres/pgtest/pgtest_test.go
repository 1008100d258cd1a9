package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestDSNGivesAFreshSchema(t *testing.T) {
	dsn := DSN(t)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var schema string
	var tables int
	err = conn.QueryRow(context.Background(), `SELECT current_schema(),
		(SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema())`).Scan(&schema, &tables)
	if err != nil {
		t.Fatal(err)
	}
	if len(schema) != len("t_")+16 || schema[:2] != "t_" || tables != 0 {
		t.Fatalf("schema %q with %d tables", schema, tables)
	}
}

func TestWithSearchPath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?search_path=t_1&sslmode=disable"},
		{"postgresql://u@h/db", "postgresql://u@h/db?search_path=t_1"},
		{"host=h dbname=db", "host=h dbname=db search_path=t_1"},
	}
	for _, c := range cases {
		if got := withSearchPath(c.in, "t_1"); got != c.want {
			t.Errorf("withSearchPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestRedact(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://u:secret@h/db", "postgres://u:xxxxx@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"host=h password=secret dbname=db", "host=h password=xxxxx dbname=db"},
	}
	for _, c := range cases {
		if got := redact(c.in); got != c.want {
			t.Errorf("redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
