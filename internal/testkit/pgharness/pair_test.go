package pgharness_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// startPair starts a primary and its standby for one test.
func startPair(t *testing.T) *pgharness.Pair {
	t.Helper()
	pgharness.Require(t, srv) // integration test: not under -short
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	p, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pair started in %v", time.Since(start).Round(100*time.Millisecond))
	t.Cleanup(func() { p.Close() })
	return p
}

// landsOn opens a pgxpool on dsn (with cfgFn applied), acquires a connection and returns the
// address it reached, or the error.
func landsOn(t *testing.T, dsn string, cfgFn func(*pgxpool.Config)) (string, error) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if cfgFn != nil {
		cfgFn(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer c.Release()
	return c.Conn().PgConn().Conn().RemoteAddr().String(), nil
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("%s: %v, want SQLSTATE %s", what, err, code)
	}
}

func execOn(t *testing.T, dsn, sql string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// TestPairFailoverWithTheOldPrimaryReadOnly follows one pair through its life: replication,
// target_session_attrs against both members, then a failover that leaves the old primary
// running read-only.
func TestPairFailoverWithTheOldPrimaryReadOnly(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	ctx := context.Background()
	primary, standby := p.Primary, p.Standby

	t.Run("the standby replicates and refuses writes", func(t *testing.T) {
		if err := execOn(t, primary.DSN(), "CREATE TABLE r (id int); INSERT INTO r VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		conn := connect(t, standby.DSN())
		deadline := time.Now().Add(30 * time.Second)
		for {
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM r").Scan(&n)
			if err == nil && n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the row never reached the standby: n=%d err=%v", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_, err := conn.Exec(ctx, "INSERT INTO r VALUES (2)")
		wantCode(t, err, "25006", "a write on the standby")
		if rec, err := standby.InRecovery(ctx); err != nil || !rec {
			t.Fatalf("standby in recovery = %v, %v", rec, err)
		}
	})

	t.Run("target_session_attrs picks the right member", func(t *testing.T) {
		tests := []struct {
			attrs string
			order []*pgharness.Server
			want  *pgharness.Server
		}{
			{"any", []*pgharness.Server{primary, standby}, primary},
			{"any", []*pgharness.Server{standby, primary}, standby},
			{"read-write", []*pgharness.Server{standby, primary}, primary},
			{"read-write", []*pgharness.Server{primary, standby}, primary},
			{"primary", []*pgharness.Server{standby, primary}, primary},
			{"prefer-standby", []*pgharness.Server{primary, standby}, standby},
			{"prefer-standby", []*pgharness.Server{standby, primary}, standby},
			{"standby", []*pgharness.Server{primary, standby}, standby},
			{"read-only", []*pgharness.Server{primary, standby}, standby},
		}
		for _, tt := range tests {
			name := tt.attrs + " primary first"
			if tt.order[0] == standby {
				name = tt.attrs + " standby first"
			}
			t.Run(name, func(t *testing.T) {
				got, err := landsOn(t, pgharness.MultiHostDSN(tt.attrs, tt.order...), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want.Addr() {
					t.Fatalf("reached %s, want %s (primary %s, standby %s)", got, tt.want.Addr(), primary.Addr(), standby.Addr())
				}
			})
		}
		t.Run("prefer-standby falls back to the primary", func(t *testing.T) {
			got, err := landsOn(t, pgharness.MultiHostDSN("prefer-standby", primary), nil)
			if err != nil || got != primary.Addr() {
				t.Fatalf("reached %s (%v), want the primary %s", got, err, primary.Addr())
			}
		})
		t.Run("primary alone refuses the standby", func(t *testing.T) {
			if got, err := landsOn(t, pgharness.MultiHostDSN("primary", standby), nil); err == nil {
				t.Fatalf("reached %s, want no server", got)
			}
		})
	})

	old := connect(t, primary.DSN()) // a session open across the failover
	if _, err := old.Exec(ctx, "INSERT INTO r VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	lookupsBefore := p.Resolver().Lookups(pgharness.StableName)
	start := time.Now()
	if err := p.Failover(ctx, pgharness.OldPrimaryReadOnly); err != nil {
		t.Fatal(err)
	}
	t.Logf("failover (read-only, promote, move the name) took %v", time.Since(start).Round(time.Millisecond))

	t.Run("the old primary answers writes with 25006, on open and new sessions", func(t *testing.T) {
		_, err := old.Exec(ctx, "INSERT INTO r VALUES (4)")
		wantCode(t, err, "25006", "a write on a session open before the failover")
		wantCode(t, execOn(t, primary.DSN(), "INSERT INTO r VALUES (5)"), "25006", "a write on a new session")
		if rec, err := primary.InRecovery(ctx); err != nil || rec {
			t.Fatalf("old primary in recovery = %v, %v; want false (read-only, not a standby)", rec, err)
		}
	})
	t.Run("the new primary accepts writes", func(t *testing.T) {
		if err := execOn(t, standby.DSN(), "INSERT INTO r VALUES (6)"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the stable name reaches the new primary", func(t *testing.T) {
		got, err := landsOn(t, p.StableDSN(), func(c *pgxpool.Config) { c.ConnConfig.LookupFunc = p.Resolver().LookupFunc })
		if err != nil {
			t.Fatal(err)
		}
		if got != standby.Addr() {
			t.Fatalf("%s reached %s, want the new primary %s", pgharness.StableName, got, standby.Addr())
		}
		if p.Resolver().Lookups(pgharness.StableName) == lookupsBefore {
			t.Fatal("the connect did not look the name up")
		}
	})
	t.Run("target_session_attrs after the failover", func(t *testing.T) {
		tests := []struct {
			attrs string
			want  *pgharness.Server
		}{
			// read-write asks SHOW transaction_read_only, so it skips the read-only old primary.
			{"read-write", standby},
			// primary asks pg_is_in_recovery(), which is false on the read-only old primary:
			// it stays there, listed first. A pool must not rely on it to leave a demoted primary.
			{"primary", primary},
			{"any", primary},
		}
		for _, tt := range tests {
			t.Run(tt.attrs, func(t *testing.T) {
				got, err := landsOn(t, pgharness.MultiHostDSN(tt.attrs, primary, standby), nil)
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.want.Addr() {
					t.Fatalf("reached %s, want %s (old primary %s, new %s)", got, tt.want.Addr(), primary.Addr(), standby.Addr())
				}
			})
		}
	})
}

func TestPairFailoverWithTheOldPrimaryStopped(t *testing.T) {
	t.Parallel()
	p := startPair(t)
	ctx := context.Background()
	old := connect(t, p.Primary.DSN())
	stable, err := landsOn(t, p.StableDSN(), func(c *pgxpool.Config) { c.ConnConfig.LookupFunc = p.Resolver().LookupFunc })
	if err != nil || stable != p.Primary.Addr() {
		t.Fatalf("before the failover %s reached %s (%v), want the primary %s", pgharness.StableName, stable, err, p.Primary.Addr())
	}
	if err := p.Failover(ctx, pgharness.OldPrimaryStopped); err != nil {
		t.Fatal(err)
	}

	if _, err := old.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session on the stopped primary still answered")
	}
	if err := execOn(t, p.Primary.DSN(), "SELECT 1"); err == nil {
		t.Fatal("connected to the stopped primary")
	}
	if err := execOn(t, p.Standby.DSN(), "CREATE TABLE w (id int)"); err != nil {
		t.Fatalf("a write on the new primary: %v", err)
	}
	got, err := landsOn(t, p.StableDSN(), func(c *pgxpool.Config) { c.ConnConfig.LookupFunc = p.Resolver().LookupFunc })
	if err != nil || got != p.Standby.Addr() {
		t.Fatalf("after the failover %s reached %s (%v), want the new primary %s", pgharness.StableName, got, err, p.Standby.Addr())
	}
	verify, _ := url.Parse(p.StableDSN())
	verify.RawQuery = url.Values{"sslmode": {"verify-full"}, "sslrootcert": {p.Standby.CAFile()}}.Encode()
	got, err = landsOn(t, verify.String(), func(c *pgxpool.Config) { c.ConnConfig.LookupFunc = p.Resolver().LookupFunc })
	if err != nil || got != p.Standby.Addr() {
		t.Fatalf("%s with sslmode=verify-full reached %s (%v), want the new primary %s", pgharness.StableName, got, err, p.Standby.Addr())
	}
	for _, attrs := range []string{"read-write", "primary", "any"} {
		got, err := landsOn(t, pgharness.MultiHostDSN(attrs, p.Primary, p.Standby), nil)
		if err != nil || got != p.Standby.Addr() {
			t.Fatalf("%s with the old primary listed first reached %s (%v), want the new primary %s", attrs, got, err, p.Standby.Addr())
		}
	}
}

func TestResolverLookupFunc(t *testing.T) {
	r := pgharness.NewResolver()
	r.Set(pgharness.StableName, "127.0.0.1:5999")
	tests := []struct {
		host     string
		want     string
		notFound bool
	}{
		{host: pgharness.StableName, want: "127.0.0.1:5999"},
		{host: "127.0.0.1", want: "127.0.0.1"},
		{host: "::1", want: "::1"},
		{host: "localhost", want: "localhost"},
		{host: "example.com", notFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := r.LookupFunc(context.Background(), tt.host)
			var dnsErr *net.DNSError
			if tt.notFound {
				if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
					t.Fatalf("got %v, %v; want a not-found DNS error", got, err)
				}
				return
			}
			if err != nil || len(got) != 1 || got[0] != tt.want {
				t.Fatalf("got %v, %v; want [%s]", got, err, tt.want)
			}
		})
	}
	r.Set(pgharness.StableName, "127.0.0.1:6000")
	if got, _ := r.LookupFunc(context.Background(), pgharness.StableName); got[0] != "127.0.0.1:6000" {
		t.Fatalf("after Set: %v, want the new address", got)
	}
	if n := r.Lookups(pgharness.StableName); n != 2 {
		t.Fatalf("Lookups = %d, want 2", n)
	}
}
