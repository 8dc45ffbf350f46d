package pool_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/internal/xact"
	"github.com/pgsteady/pgsteady/retry"
)

// xactTarget is a way to reach the test server: directly, or through PgBouncer in transaction
// mode (where pgx must not cache prepared statements).
type xactTarget struct {
	name string
	dsn  func(s *pgharness.Server, db string) string
	mode pgx.QueryExecMode
}

var xactTargets = []xactTarget{
	{"postgres", func(s *pgharness.Server, db string) string { return db }, pgx.QueryExecModeCacheStatement},
	{"pgbouncer", func(s *pgharness.Server, db string) string { return pgharness.WithAddr(db, s.BouncerAddr()) }, pgx.QueryExecModeExec},
}

// xactDB returns a fresh database holding table uploads(key text), a connection and a pgxpool
// on it through target.
func xactDB(ctx context.Context, t testing.TB, target xactTarget) (*pgx.Conn, *pgxpool.Pool, string) {
	t.Helper()
	s := pgharness.Require(t, srv)
	db, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, "CREATE TABLE uploads (key text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	dsn := target.dsn(s, db)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = target.mode
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.ConnConfig.DefaultQueryExecMode = target.mode
	p, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return conn, p, dsn
}

func TestResolveXact(t *testing.T) {
	for _, target := range xactTargets {
		t.Run(target.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			conn, lookup, _ := xactDB(ctx, t, target)

			begin := func() (pgx.Tx, xact.Ref) {
				t.Helper()
				tx, ref, err := xact.Begin(ctx, conn, pgx.TxOptions{})
				if err != nil {
					t.Fatalf("begin: %v", err)
				}
				if ref.Xid() == 0 || ref.Stamp() == "" {
					t.Fatalf("transaction id %d, crash stamp %q", ref.Xid(), ref.Stamp())
				}
				if _, err := tx.Exec(ctx, "INSERT INTO uploads VALUES ($1)", strconv.FormatUint(ref.Xid(), 10)); err != nil {
					t.Fatal(err)
				}
				return tx, ref
			}
			resolve := func(d time.Duration, ref xact.Ref) (xact.Status, error) {
				rctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				return xact.Resolve(rctx, lookup, ref)
			}

			tx, committed := begin()
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := resolve(10*time.Second, committed); st != xact.Committed || err != nil {
				t.Errorf("committed transaction: %v, %v", st, err)
			}

			tx, aborted := begin()
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := resolve(10*time.Second, aborted); st != xact.Aborted || err != nil {
				t.Errorf("rolled back transaction: %v, %v", st, err)
			}
			if aborted.Xid() <= committed.Xid() {
				t.Errorf("ids %d then %d: not increasing", committed.Xid(), aborted.Xid())
			}

			// Still open: in progress until the budget ends.
			tx, open := begin()
			st, err := resolve(time.Second, open)
			if st != xact.InProgress || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("open transaction: %v, %v; want in progress and the deadline", st, err)
			}
			// Polling sees it commit.
			committing := make(chan struct{})
			go func() {
				defer close(committing)
				time.Sleep(100 * time.Millisecond)
				tx.Commit(ctx)
			}()
			if st, err := resolve(10*time.Second, open); st != xact.Committed || err != nil {
				t.Errorf("transaction committed while polling: %v, %v", st, err)
			}
			<-committing

			// An id the server has not assigned, as after a failover to a standby that lagged:
			// unknowable, not aborted.
			future := xact.NewRef(aborted.Xid()+1_000_000, aborted.Stamp())
			st, err = resolve(10*time.Second, future)
			var pgErr *pgconn.PgError
			if st != xact.Unknown || !errors.As(err, &pgErr) || pgErr.Code != "22023" {
				t.Errorf("future id: %v, %v; want unknown and SQLSTATE 22023", st, err)
			} else {
				t.Logf("future id: %v", err)
			}

			if st, err := resolve(time.Second, xact.NewRef(0, aborted.Stamp())); st != xact.Unknown || err == nil {
				t.Errorf("id 0: %v, %v; want unknown and an error", st, err)
			}
		})
	}
}

// A COMMIT whose answer is lost: the server receives and runs it, the answer is held back and
// the connection reset. The client cannot tell; the lookup can.
func TestResolveXactLostCommit(t *testing.T) {
	s := pgharness.Require(t, srv)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, lookup, dsn := xactDB(ctx, t, xactTargets[0])
	proxy := faultproxy.Start(t, s.Addr())
	conn, err := pgx.Connect(ctx, pgharness.WithAddr(dsn, proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	tx, xid, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO uploads VALUES ('lost')"); err != nil {
		t.Fatal(err)
	}
	proxy.StallResponses()
	done := make(chan error, 1)
	go func() { done <- tx.Commit(ctx) }()
	time.Sleep(200 * time.Millisecond) // let COMMIT reach the server
	proxy.ResetAll()
	err = <-done
	if retry.Classify(err) != retry.ConnLost {
		t.Fatalf("commit: %v (%v), want a lost connection", err, retry.Classify(err))
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	st, lerr := xact.Resolve(rctx, lookup, xid)
	var n int
	if err := lookup.QueryRow(ctx, "SELECT count(*) FROM uploads WHERE key = 'lost'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if st != xact.Committed || n != 1 {
		t.Errorf("lost commit resolved as %v (%v), and the row is there %d times; want committed and 1", st, lerr, n)
	}
}

// The lookup cannot be made: the server is unreachable for the whole budget.
func TestResolveXactUnreachable(t *testing.T) {
	s := pgharness.Require(t, srv)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	proxy := faultproxy.Start(t, s.Addr())
	p, err := pgxpool.New(ctx, pgharness.WithAddr(s.DSN(), proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	proxy.Close()

	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer rcancel()
	st, err := xact.Resolve(rctx, p, xact.NewRef(1000, "x"))
	if st != xact.Unknown || err == nil {
		t.Errorf("unreachable server: %v, %v; want unknown and the lookup's error", st, err)
	}
	t.Logf("lookup error: %v", err)
}

// BenchmarkTxXid measures what learning the transaction id costs a transaction, on one
// connection straight to the server: BEGIN, one statement, COMMIT.
//
//	plain     BEGIN; stmt; COMMIT (pgx's BeginTx)
//	batch     BEGIN and SELECT pg_current_xact_id() in one batch (one round trip); stmt; COMMIT
//	roundtrip BEGIN; SELECT pg_current_xact_id(); stmt; COMMIT (a round trip more)
//
// for a write (INSERT: the transaction gets an id anyway) and a read (SELECT: asking forces
// an id, and COMMIT then writes a commit record).
func BenchmarkTxXid(b *testing.B) {
	ctx := context.Background()
	conn, _, _ := xactDB(ctx, b, xactTargets[0])
	stmts := map[string]string{
		"write": "INSERT INTO uploads VALUES ($1)",
		"read":  "SELECT $1::text",
	}
	begins := []struct {
		name  string
		begin func() (pgx.Tx, error)
	}{
		{"plain", func() (pgx.Tx, error) { return conn.BeginTx(ctx, pgx.TxOptions{}) }},
		{"batch", func() (pgx.Tx, error) {
			tx, _, err := xact.Begin(ctx, conn, pgx.TxOptions{})
			return tx, err
		}},
		{"roundtrip", func() (pgx.Tx, error) {
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{})
			if err != nil {
				return nil, err
			}
			var s string
			return tx, tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&s)
		}},
	}
	for _, kind := range []string{"write", "read"} {
		for _, bg := range begins {
			b.Run(kind+"/"+bg.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					tx, err := bg.begin()
					if err != nil {
						b.Fatal(err)
					}
					if _, err := tx.Exec(ctx, stmts[kind], "k"); err != nil {
						b.Fatal(err)
					}
					if err := tx.Commit(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The caller's context ends while COMMIT is in flight: retry.Classify says Permanent (the caller
// gave up), but the COMMIT ran. commitUncertain says so, and the lookup finds it committed.
func TestCommitInterruptedByContext(t *testing.T) {
	s := pgharness.Require(t, srv)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, lookup, dsn := xactDB(ctx, t, xactTargets[0])
	proxy := faultproxy.Start(t, s.Addr())
	conn, err := pgx.Connect(ctx, pgharness.WithAddr(dsn, proxy.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	tx, xid, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO uploads VALUES ('interrupted')"); err != nil {
		t.Fatal(err)
	}
	proxy.StallResponses()
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = tx.Commit(cctx)
	ccancel()
	t.Logf("commit: %v (class %v)", err, retry.Classify(err))
	if !xact.Uncertain(err) {
		t.Fatalf("commitUncertain(%v) = false", err)
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	st, lerr := xact.Resolve(rctx, lookup, xid)
	var n int
	if err := lookup.QueryRow(ctx, "SELECT count(*) FROM uploads WHERE key = 'interrupted'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if st != xact.Committed || n != 1 {
		t.Errorf("resolved as %v (%v), row there %d times; want committed and 1", st, lerr, n)
	}
}

// A COMMIT the server answers with an error did not commit: the outcome is known, and the
// lookup agrees.
func TestCommitRefusedIsKnown(t *testing.T) {
	pgharness.Require(t, srv)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, lookup, _ := xactDB(ctx, t, xactTargets[0])
	if _, err := conn.Exec(ctx, `CREATE TABLE keys (k text, CONSTRAINT keys_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
		INSERT INTO keys VALUES ('a')`); err != nil {
		t.Fatal(err)
	}
	tx, xid, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO keys VALUES ($1)", "a"); err != nil {
		t.Fatal(err) // deferred: checked at COMMIT
	}
	err = tx.Commit(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("commit: %v, want SQLSTATE 23505", err)
	}
	if xact.Uncertain(err) {
		t.Errorf("commitUncertain(%v) = true", err)
	}
	st, lerr := xact.Resolve(ctx, lookup, xid)
	if st != xact.Aborted {
		t.Errorf("lookup says %v (%v), want aborted", st, lerr)
	}
}

// A status learned on a server whose crash stamp changed is not believed, unless it is aborted.
func TestResolveXactStampChanged(t *testing.T) {
	pgharness.Require(t, srv)
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, lookup, _ := xactDB(ctx, t, xactTargets[0])
	tx, committed, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	tx, aborted, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	other := func(r xact.Ref) xact.Ref { return xact.NewRef(r.Xid(), "2001-01-01 00:00:00+00") }
	if st, err := xact.Resolve(ctx, lookup, other(committed)); st != xact.Unknown || !errors.Is(err, xact.ErrIDReused) {
		t.Errorf("committed, stamp changed: %v, %v; want unknown, ErrXidReused", st, err)
	}
	if st, err := xact.Resolve(ctx, lookup, other(aborted)); st != xact.Aborted || err != nil {
		t.Errorf("aborted, stamp changed: %v, %v; want aborted", st, err)
	}
}

// After a crash the server hands out the ids of transactions it lost again, and pg_xact_status
// answers for the new owner. resolveXact must not call the lost transaction committed.
//
// Not parallel: the crash ends every session of the server.
func TestResolveXactAfterCrash(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, _, dsn := xactDB(ctx, t, xactTargets[0])

	tx, lost, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO uploads VALUES ('lost in the crash')"); err != nil {
		t.Fatal(err)
	}
	// SIGKILL this backend: the postmaster ends every session and recovers from the WAL on disk,
	// where the INSERT never got to.
	pid := conn.PgConn().PID()
	admin, err := pgx.Connect(ctx, s.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	// Whatever happens next, the tests after this one get a server that accepts sessions.
	t.Cleanup(func() { waitAccepting(context.Background(), t, s.AdminDSN()) })
	// The crash ends the admin session too, so an error here is expected.
	_, err = admin.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN EXECUTE format('COPY (SELECT 1) TO PROGRAM %%L', 'kill -9 %d'); END $$`, pid))
	admin.Close(context.Background())
	t.Logf("kill -9 %d: %v", pid, err)
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("the killed backend's session still answers")
	}
	waitAccepting(ctx, t, s.AdminDSN())

	// After recovery, a new transaction, and the lookup, on a new pool.
	p, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx2, next, err := xact.Begin(ctx, c, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx2.Exec(ctx, "INSERT INTO uploads VALUES ('after the crash')"); err != nil {
		t.Fatal(err)
	}
	if err := tx2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	c.Release()
	t.Logf("lost transaction %d (stamp %s); first after the crash %d (stamp %s)", lost.Xid(), lost.Stamp(), next.Xid(), next.Stamp())
	if lost.Stamp() == next.Stamp() {
		t.Errorf("the crash stamp did not change across crash recovery")
	}

	var n int
	if err := p.QueryRow(ctx, "SELECT count(*) FROM uploads WHERE key = 'lost in the crash'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the lost INSERT is there %d times: the crash did not lose it, the test proves nothing", n)
	}
	st, err := xact.Resolve(ctx, p, lost)
	t.Logf("resolved as %v: %v", st, err)
	if st == xact.Committed || st == xact.InProgress {
		t.Errorf("a transaction lost in a crash resolved as %v", st)
	}
}

// A clean restart keeps the crash stamp: PostgreSQL keeps its statistics across a clean
// shutdown, and records the next transaction id in its shutdown checkpoint, so ids are not
// reused and commits lost in the restart stay resolvable.
//
// Not parallel: the restart ends every session of the server.
func TestCrashStampSurvivesCleanRestart(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	conn, _, dsn := xactDB(ctx, t, xactTargets[0])
	tx, before, err := xact.Begin(ctx, conn, pgx.TxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	p, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := xact.Resolve(ctx, p, before)
	if st != xact.Committed || err != nil {
		t.Errorf("committed before a clean restart, resolved after it as %v, %v", st, err)
	}
}

// waitAccepting waits until dsn's server accepts a session and answers a query, for at most a
// minute.
func waitAccepting(ctx context.Context, t *testing.T, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1")
			c.Close(context.Background())
			if err == nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Errorf("the server does not accept sessions: %v", err)
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}
