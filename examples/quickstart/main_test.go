package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pgsteady/pgsteady/internal/pgharness"
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
		if err := run(t.Context(), &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), `"checked_in"`) {
			t.Errorf("output lacks %q or the pool stats:\n%s", want, out.String())
		}
	}
}
