package pool_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// The pool's reflexes (failover on 25006, the idle horizon, commit resolution, conflict
// retries) act only on confirmed signals: an application's own error never turns the pool
// against its callers. Each case below was reproduced against the round-2 pool first.

// isCode reports whether err carries a server error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// callersError checks that err is the application's own permanent 25006: the caller sees the
// server's error, is not told to come back later, and the pool neither suspected a failover
// nor retried nor opened more than one connection beyond before.
func callersError(t *testing.T, p *pool.Pool, before pool.Stats, err error) {
	t.Helper()
	if !isCode(err, "25006") {
		t.Fatalf("err = %v, want the server's 25006", err)
	}
	if retry.MayRetryLater(err) {
		t.Errorf("retry.MayRetryLater(%v) = true, want false: the application's own read-only error is not an outage", err)
	}
	st := p.Stats()
	if st.Failovers != before.Failovers {
		t.Errorf("failovers suspected %d -> %d, want no change", before.Failovers, st.Failovers)
	}
	if r, b := st.Retries, before.Retries; r != b {
		t.Errorf("retries %+v -> %+v, want none", b, r)
	}
	if n := st.Opened - before.Opened; n > 1 {
		t.Errorf("%d connections opened for an application error, want at most 1", n)
	}
}

func TestAReadOnlyTxThatWritesIsTheCallersError(t *testing.T) {
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	before := p.Stats()
	calls := 0
	err := p.Tx(t.Context(), pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		calls++
		_, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('ro-tx')")
		return err
	})
	if calls != 1 {
		t.Errorf("fn ran %d times, want once", calls)
	}
	callersError(t, p, before, err)
}

func TestAWriteSetReadOnlyByTheCallerIsTheCallersError(t *testing.T) {
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	before := p.Stats()
	calls := 0
	// The caller's own SET TRANSACTION, which the pool does not see in TxOptions.
	err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
		calls++
		if _, err := tx.Exec(t.Context(), "SET TRANSACTION READ ONLY"); err != nil {
			return err
		}
		_, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('set-ro')")
		return err
	})
	if calls != 1 {
		t.Errorf("fn ran %d times, want once", calls)
	}
	callersError(t, p, before, err)
}

// readOnlyRole creates a login role whose sessions are read-only by default (ALTER ROLE ... SET
// default_transaction_read_only) in dsn's database, and returns dsn for that role.
func readOnlyRole(t *testing.T, dsn string) string {
	t.Helper()
	s := pgharness.Require(t, srv)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := strings.TrimPrefix(u.Path, "/")
	role := "ro_" + strings.ReplaceAll(db, "-", "_")
	admin := newPool(t, pgharness.WithDatabase(s.AdminDSN(), db), nil)
	if _, err := admin.Exec(t.Context(), fmt.Sprintf(`CREATE ROLE %[1]s LOGIN PASSWORD 'ro-secret';
		ALTER ROLE %[1]s SET default_transaction_read_only = on;
		GRANT ALL ON ALL TABLES IN SCHEMA public TO %[1]s`, role)); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	u.User = url.UserPassword(role, "ro-secret")
	return u.String()
}

func TestAWriteByAReadOnlyRoleIsTheCallersError(t *testing.T) {
	dsn := readOnlyRole(t, freshDB(t))
	p := newPool(t, dsn, nil)
	for _, call := range []struct {
		name string
		run  func() error
	}{
		{"Exec", func() error {
			_, err := p.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('ro-role')")
			return err
		}},
		{"Idempotent Exec", func() error {
			_, err := p.Idempotent().Exec(t.Context(), "INSERT INTO writes (key) VALUES ('ro-role')")
			return err
		}},
		{"Tx", func() error {
			return p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('ro-role')")
				return err
			})
		}},
	} {
		t.Run(call.name, func(t *testing.T) {
			before := p.Stats()
			callersError(t, p, before, call.run())
		})
	}
	// Reads still work, on the same connections.
	var n int
	if err := p.QueryRow(t.Context(), "SELECT count(*) FROM writes").Scan(&n); err != nil {
		t.Fatal(err)
	}
}

// A pool on a hot standby (a read replica) runs read-only work in Tx, and refuses writes as the
// caller's error, without suspecting a failover: the standby is where the DSN leads.
func TestAPoolOnAHotStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair := startPair(ctx, t)
	for _, target := range []string{"", "standby", "prefer-standby"} {
		t.Run("target_session_attrs="+target, func(t *testing.T) {
			dsn := pgharness.WithAddr(pair.StableDSN(), pair.Standby.Addr())
			if target != "" {
				dsn = pgharness.MultiHostDSN(target, pair.Primary, pair.Standby)
			}
			p := newPool(t, dsn, func(c *config.Config) { c.AcquireTimeout = 5 * time.Second })
			before := p.Stats()
			calls := 0
			var inRecovery bool
			err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
				calls++
				return tx.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			})
			if err != nil || calls != 1 || !inRecovery {
				t.Fatalf("Tx = %v, fn ran %d times, in recovery %v; want nil, once, true", err, calls, inRecovery)
			}
			err = p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "CREATE TABLE on_standby (k int)")
				return err
			})
			callersError(t, p, before, err)
			_, err = p.Exec(ctx, "CREATE TABLE on_standby (k int)")
			callersError(t, p, before, err)
		})
	}
}

// A connection that was busy when the failover was confirmed is replaced when it comes back:
// the pool condemns connections by when they were opened, not by when they were last used.
func TestAConnectionBusyDuringTheFailoverIsReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair := startPair(ctx, t)
	onPrimary(ctx, t, pair, "CREATE TABLE IF NOT EXISTS busy_writes (key text NOT NULL)")
	p := pairPool(ctx, t, pair, 2, 0)

	// Two connections to the old primary: one busy in a caller's hands, one idle.
	busy, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "INSERT INTO busy_writes VALUES ('before')"); err != nil {
		t.Fatal(err)
	}
	if err := pair.Failover(ctx, pgharness.OldPrimaryReadOnly); err != nil {
		t.Fatal(err)
	}
	// The idle connection meets the fenced old primary: the failover is confirmed, and the
	// write goes to the new primary.
	if _, err := p.Exec(ctx, "INSERT INTO busy_writes VALUES ('first')"); err != nil {
		t.Fatalf("first write after the failover: %v", err)
	}
	busy.Release()
	newPrimary := pair.Standby.Addr()
	for i := range 10 {
		var port int
		if err := p.QueryRow(ctx, "INSERT INTO busy_writes VALUES ($1) RETURNING inet_server_port()", fmt.Sprint(i)).Scan(&port); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if st := p.Stats(); st.Failovers != 1 {
		t.Errorf("failovers suspected %d, want 1: the busy connection must not bring the failover back (new primary %s)", st.Failovers, newPrimary)
	}
}

// A statement that may commit part of its work before a conflict (a procedure or a DO block
// with COMMIT, several statements in one string) is not run again: its committed part would be
// stored twice. The caller gets the conflict.
func TestAConflictAfterAnInnerCommitIsNotRetried(t *testing.T) {
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	if _, err := p.Exec(t.Context(), `CREATE PROCEDURE commit_then_conflict(k text) LANGUAGE plpgsql AS $$
		BEGIN
			INSERT INTO writes (key) VALUES (k);
			COMMIT;
			RAISE EXCEPTION 'conflict after commit' USING ERRCODE = '40P01';
		END $$`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key, sql string
		args           []any
	}{
		{"CALL", "call", "CALL commit_then_conflict($1)", []any{"call"}},
		{"CALL without arguments", "call-literal", "CALL commit_then_conflict('call-literal')", nil},
		{"DO", "do", `DO $$ BEGIN INSERT INTO writes (key) VALUES ('do'); COMMIT;
			RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`, nil},
		{"several statements", "multi", `INSERT INTO writes (key) VALUES ('multi'); COMMIT;
			DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := p.Stats()
			_, err := p.Exec(t.Context(), tc.sql, tc.args...)
			if !isCode(err, "40P01") && !isCode(err, "40001") {
				t.Errorf("err = %v, want the conflict", err)
			}
			if n := countWrites(t, dsn, tc.key); n != 1 {
				t.Errorf("%d rows stored, want 1: the committed part ran again", n)
			}
			if r := p.Stats().Retries.Conflict - before.Retries.Conflict; r != 0 {
				t.Errorf("%d conflict retries, want 0", r)
			}
		})
	}
	// A single statement's conflict is still retried: it rolled back whole. (The sequence is
	// not transactional: the function fails on its first call only.)
	if _, err := p.Exec(t.Context(), `CREATE SEQUENCE once;
		CREATE FUNCTION conflict_once() RETURNS int LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('once') = 1 THEN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END IF;
			RETURN 1;
		END $$`); err != nil {
		t.Fatal(err)
	}
	before := p.Stats()
	if _, err := p.Exec(t.Context(), "SELECT conflict_once()"); err != nil {
		t.Fatalf("a single statement's conflict: %v, want it retried", err)
	}
	if r := p.Stats().Retries.Conflict - before.Retries.Conflict; r != 1 {
		t.Errorf("%d conflict retries, want 1", r)
	}
}

// Callers waiting for a connection with a context that never ends get ErrClosed when the pool
// closes: Close does not disarm their acquire budget.
func TestCloseEndsCallersWaitingWithoutADeadline(t *testing.T) {
	dsn := freshDB(t)
	p := newPool(t, dsn, func(c *config.Config) {
		c.Size, c.Overflow = 1, 0
		c.AcquireTimeout = 2 * time.Second
	}, pool.WithCloseGrace(100*time.Millisecond))
	held, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := p.Exec(context.Background(), "SELECT 1")
		done <- err
	}()
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	p.Close()
	var got error
	select {
	case got = <-done:
	case <-time.After(time.Minute): // a hang guard, far past any bound: the caller never returned
		t.Fatal("a caller waiting when the pool closed never returned")
	}
	held.Release()
	if !errors.Is(got, pool.ErrClosed) {
		t.Fatalf("waiting caller got %v, want ErrClosed", got)
	}
}

// What the pool reports is what it does.
func TestStatsTellTheTruth(t *testing.T) {
	t.Run("pgx MaxConns is the pool's limit", func(t *testing.T) {
		p := newPool(t, freshDB(t), nil, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.MaxConns = 3 }))
		if st := p.Stats(); st.MaxConns != 3 || p.Config().MaxConns() != 3 {
			t.Fatalf("Stats().MaxConns %d, Config().MaxConns() %d; want 3 as pgxpool enforces", st.MaxConns, p.Config().MaxConns())
		}
	})
	t.Run("ShouldPing and PingTimeout are refused", func(t *testing.T) {
		cfg, err := config.Parse(freshDB(t))
		if err != nil {
			t.Fatal(err)
		}
		for name, edit := range map[string]func(*pgxpool.Config){
			"ShouldPing": func(pc *pgxpool.Config) {
				pc.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
			},
			"PingTimeout": func(pc *pgxpool.Config) { pc.PingTimeout = time.Minute },
		} {
			p, err := pool.New(t.Context(), cfg, pool.WithPgxConfig(edit))
			if err == nil {
				p.Close()
				t.Errorf("New accepted a WithPgxConfig that sets %s, which the pool overrides", name)
			} else if !strings.Contains(err.Error(), name) {
				t.Errorf("New: %v, want an error naming %s", err, name)
			}
		}
	})
	t.Run("acquire counts agree", func(t *testing.T) {
		p := newPool(t, freshDB(t), nil)
		for range 5 {
			if _, err := p.Exec(t.Context(), "SELECT 1"); err != nil {
				t.Fatal(err)
			}
		}
		if a, b := p.Stat().AcquireCount(), p.Stats().AcquireCount; a != b {
			t.Fatalf("Stat().AcquireCount() %d, Stats().AcquireCount %d; want equal", a, b)
		}
	})
	t.Run("Reset counts as recycled", func(t *testing.T) {
		p := newPool(t, freshDB(t), func(c *config.Config) { c.Size, c.Overflow = 3, 0 })
		for _, c := range testhelp.Hold(t, p, 3) {
			c.Release()
		}
		waitFor(t, func() bool { return p.Stats().IdleConns == 3 })
		before := p.Stats().Recycled
		p.Reset()
		// pgxpool closes them in the background, after they left TotalConns.
		waitFor(t, func() bool { return p.Stats().Recycled-before >= 3 })
		if got := p.Stats().Recycled - before; got != 3 {
			t.Fatalf("Recycled grew by %d after Reset closed 3 connections, want 3", got)
		}
	})
	t.Run("a timeout names only failures of its own wait", func(t *testing.T) {
		s := pgharness.Require(t, srv)
		dsn := freshDB(t)
		p := newPool(t, dsn, func(c *config.Config) {
			c.Size, c.Overflow = 1, 0
			c.AcquireTimeout = time.Second
			c.PrePing = config.PrePingAlways
		})
		// An unrelated kill: the next pre-ping fails, and the pool replaces the connection.
		if _, err := s.TerminateBackends(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Exec(t.Context(), "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		held, err := p.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer held.Release()
		_, err = p.Exec(t.Context(), "SELECT 1")
		var te *pool.TimeoutError
		if !errors.As(err, &te) {
			t.Fatalf("err = %v, want a *TimeoutError", err)
		}
		if te.LastErr != nil {
			t.Fatalf("LastErr = %v, want nil: nothing failed while this caller waited (its own callers hold the pool)", te.LastErr)
		}
	})
}

// One ping slowed by a latency spike (a slow answer, not a black hole) teaches no idle horizon
// below the floor that follows from the pool's settings: after the spike, every read works on
// the connections the pool has, whatever the pre-ping mode.
func TestALatencySpikeTeachesNoTinyHorizon(t *testing.T) {
	dsn := freshDB(t)
	const pingTimeout = 500 * time.Millisecond
	for _, mode := range []config.PrePingMode{config.PrePingAlways, config.PrePingIdle} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			proxy := newProxy(t)
			p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
				c.PingTimeout = pingTimeout
				c.PrePing = mode
				c.PrePingAfter = 200 * time.Millisecond
				c.Size, c.Overflow = 2, 2
			})
			read := func() error {
				var v string
				return p.Idempotent().QueryRow(t.Context(), "SELECT v FROM kv WHERE k = 1").Scan(&v)
			}
			if err := read(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)       // past PrePingAfter: the next acquire pings
			proxy.SetLatency(400 * time.Millisecond) // a round trip costs 800 ms: the ping times out
			_ = read()                               // may succeed on a new connection, or not
			proxy.SetLatency(0)
			before := p.Stats()
			failed := 0
			for range 20 {
				if err := read(); err != nil {
					failed++
					t.Logf("read: %v", err)
				}
			}
			st := p.Stats()
			t.Logf("horizon %v, failed pings %d, replaced idle %d -> %d, opened %d", st.IdleHorizon, st.FailedPings, before.ReplacedIdle, st.ReplacedIdle, st.Opened)
			if failed != 0 {
				t.Errorf("%d of 20 reads failed after the spike", failed)
			}
			if h := st.IdleHorizon; h != 0 && h < 2*pingTimeout {
				t.Errorf("learned horizon %v, below the floor 2*PingTimeout = %v", h, 2*pingTimeout)
			}
			if r := st.ReplacedIdle - before.ReplacedIdle; r > 2 {
				t.Errorf("%d connections replaced without a ping after the spike, want at most 2", r)
			}
		})
	}
}
