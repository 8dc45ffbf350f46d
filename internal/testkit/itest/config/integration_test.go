package config_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// newPool builds a pool from c the way a user would, closed at the end of the test.
func newPool(t *testing.T, c *config.Config) *pgxpool.Pool {
	t.Helper()
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// dbVarsFrom splits a harness URL into DB_* variables.
func dbVarsFrom(t *testing.T, dsn string) map[string]string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	return map[string]string{
		"DB_USER":     u.User.Username(),
		"DB_PASSWORD": pw,
		"DB_HOST":     host,
		"DB_PORT":     port,
		"DB_NAME":     strings.TrimPrefix(u.Path, "/"),
		"DB_SSLMODE":  u.Query().Get("sslmode"),
	}
}

func TestIntegrationFromEnvConnectsOverTLS(t *testing.T) {
	s := pgharness.Require(t, srv)
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"DB_* variables", dbVarsFrom(t, s.DSN())},
		{"DB_* variables, sslmode defaulted", func() map[string]string {
			m := dbVarsFrom(t, s.DSN())
			delete(m, "DB_SSLMODE")
			return m
		}()},
		{"DATABASE_URL", map[string]string{"DATABASE_URL": s.DSN()}},
		{"DATABASE_URL verify-full", map[string]string{"DATABASE_URL": s.VerifyFullDSN()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.SetEnv(t, tc.env)
			c, err := config.FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(c.String(), s.Password()) {
				t.Fatalf("String() shows the password")
			}
			pool := newPool(t, c)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var ssl bool
			var version string
			err = pool.QueryRow(ctx, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version)
			if err != nil {
				t.Fatal(err)
			}
			if !ssl {
				t.Fatalf("connection is not encrypted")
			}
			t.Logf("TLS %s", version)
		})
	}
}

func TestIntegrationWrongPasswordErrorHidesIt(t *testing.T) {
	s := pgharness.Require(t, srv)
	testhelp.ClearEnv(t)
	const wrong = "not-the-Password-42"
	dsn := strings.Replace(s.DSN(), ":"+s.Password()+"@", ":"+wrong+"@", 1)
	c, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pool := newPool(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = pool.Ping(ctx)
	if err == nil {
		t.Fatal("a wrong password connected")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Fatalf("pgx's connect error shows the password: %v", err)
	}
}

// queries are distinct parameterised statements: with pgx's statement cache each becomes a
// named prepared statement on whatever server connection PgBouncer lent at the time.
var queries = []struct {
	sql  string
	args func(i int) []any
}{
	{"SELECT $1::int + 1", func(i int) []any { return []any{i} }},
	{"SELECT length($1::text)", func(i int) []any { return []any{fmt.Sprint(i)} }},
	{"SELECT $1::int * $2::int", func(i int) []any { return []any{i, 3} }},
	{"SELECT count(*)::int FROM generate_series(1, $1::int)", func(i int) []any { return []any{i%10 + 1} }},
	{"SELECT $1::bigint - 1", func(i int) []any { return []any{int64(i)} }},
}

// workload runs n queries across workers goroutines and returns the number that failed and
// the first error.
func workload(ctx context.Context, pool *pgxpool.Pool, n, workers int) (int64, error) {
	var failed atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	per := n / workers
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				q := queries[(w+i)%len(queries)]
				var out int64
				if err := pool.QueryRow(ctx, q.sql, q.args(i)...).Scan(&out); err != nil {
					failed.Add(1)
					once.Do(func() { first = err })
				}
			}
		})
	}
	wg.Wait()
	return failed.Load(), first
}

func TestIntegrationBouncerTransactionMode(t *testing.T) {
	s := pgharness.Require(t, srv)
	testhelp.ClearEnv(t)
	const n, workers = 1000, 8

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("pooler=transaction: no errors", func(t *testing.T) {
		c, err := config.Parse(s.BouncerDSN() + "&pooler=transaction")
		if err != nil {
			t.Fatal(err)
		}
		if c.Pooler != config.PoolerTransaction {
			t.Fatalf("Pooler = %v", c.Pooler)
		}
		pool := newPool(t, c)
		if got := pool.Config().ConnConfig.DefaultQueryExecMode; got != pgx.QueryExecModeExec {
			t.Fatalf("exec mode %v, want exec", got)
		}
		failed, first := workload(ctx, pool, n, workers)
		if failed != 0 {
			t.Fatalf("%d of %d queries failed; first: %v", failed, n, first)
		}
	})

	t.Run("pgx default mode: errors", func(t *testing.T) {
		c, err := config.Parse(s.BouncerDSN() + "&pooler=none")
		if err != nil {
			t.Fatal(err)
		}
		c.Size, c.Overflow = workers, 0
		pool := newPool(t, c)
		if got := pool.Config().ConnConfig.DefaultQueryExecMode; got != pgx.QueryExecModeCacheStatement {
			t.Fatalf("exec mode %v, want pgx's default cache_statement", got)
		}
		failed, first := workload(ctx, pool, n, workers)
		t.Logf("%d of %d queries failed with pgx's default mode; first: %v", failed, n, first)
		if failed == 0 {
			t.Fatalf("no query failed: the pooler mix-up this test demonstrates did not happen")
		}
		// Prepared statement mix-ups: 42P05 duplicate_prepared_statement or 26000
		// invalid_sql_statement_name.
		var pgErr *pgconn.PgError
		if !errors.As(first, &pgErr) || (pgErr.Code != "42P05" && pgErr.Code != "26000") {
			t.Logf("first error is not a prepared-statement SQLSTATE: %v", first)
		}
	})
}
