package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{}) }

func TestRun(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", dsn)
	for _, want := range []string{"visits: 1\n", "visits: 2\n"} {
		var out bytes.Buffer
		if err := run(t.Context(), os.Getenv, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), `"checked_in"`) {
			t.Errorf("output lacks %q or the pool stats:\n%s", want, out.String())
		}
	}
}

// With no database configured and no Docker engine, the quickstart runs on a throwaway cluster
// of the PostgreSQL binaries on this machine, and removes it.
func TestRunOnTheLocalBinaries(t *testing.T) {
	pgharness.RequireLocal(t)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	env := func(k string) string {
		if k == "DATABASE_URL" || strings.HasPrefix(k, "DB_") || k == "PGHOST" || k == "PGSERVICE" {
			return "" // no database configured
		}
		return os.Getenv(k)
	}
	var out bytes.Buffer
	if err := run(t.Context(), env, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	_, what, _ := strings.Cut(out.String(), "quickstart: embedded database: ")
	what, _, _ = strings.Cut(what, "\n")
	_, dir, found := strings.Cut(what, ", cluster in ")
	dir, _, _ = strings.Cut(dir, ",")
	if !found || !strings.Contains(out.String(), "visits: 1\n") {
		t.Fatalf("want a run on a local cluster, got:\n%s", out.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("cluster folder %s still there after the run (%v)", dir, err)
	}
}
