package otelpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{}) }

// newPool builds a pool on a fresh database, after letting edit change the parsed config, and
// returns it with the database's DSN.
func newPool(t *testing.T, edit func(*config.Config), opts ...pool.Option) (*pool.Pool, string) {
	t.Helper()
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p, err := pool.New(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, dsn
}
