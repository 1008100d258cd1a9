package storetest

import "testing"

func TestSQLiteNotices(t *testing.T)   { RunNotices(t, openSQLite) }
func TestPostgresNotices(t *testing.T) { RunNotices(t, openPostgres) }
