package pool_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// The tests on pgfake check the pool's logic against scripted answers, inside
// testing/synctest (fake time: a 30 s AcquireTimeout passes at once). They prove what the pool
// does with an answer, not that PostgreSQL gives it: internal/testkit/itest is the judge of
// that.

// fakeServer starts a fake server answering with h; it closes when the test ends, after the
// pools built on it.
func fakeServer(t *testing.T, h pgfake.Handler) *pgfake.Server {
	t.Helper()
	s := pgfake.New(h)
	t.Cleanup(s.Close)
	return s
}

// fakePool builds a pool on s, after letting edit change the parsed config; it closes when the
// test ends. A WithPgxConfig among opts runs after the one that dials s, so it may replace the
// DialFunc.
func fakePool(t *testing.T, s *pgfake.Server, edit func(*config.Config), opts ...pool.Option) *pool.Pool {
	t.Helper()
	p, err := newFakePool(t, s, edit, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// newFakePool is fakePool returning New's error.
func newFakePool(t *testing.T, s *pgfake.Server, edit func(*config.Config), opts ...pool.Option) (*pool.Pool, error) {
	t.Helper()
	cfg, err := config.Parse(pgfake.DSN)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	opts = append([]pool.Option{pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = s.Dial })}, opts...)
	p, err := pool.New(t.Context(), cfg, opts...)
	if err == nil {
		t.Cleanup(p.Close)
	}
	return p, err
}

// sqlHas matches the statements whose SQL contains part.
func sqlHas(part string) func(pgfake.Query) bool {
	return func(q pgfake.Query) bool { return strings.Contains(q.SQL, part) }
}

// count is how many statements s received whose SQL contains part.
func count(s *pgfake.Server, part string) int { return len(s.Seen(sqlHas(part))) }
