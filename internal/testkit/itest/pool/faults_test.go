package pool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

const workers = 8

// sleep lets a fault or a workload run for d.
func sleep(d time.Duration) { time.Sleep(d) }

func TestFaultServerClosesIdleSessions(t *testing.T) {
	for _, mode := range []config.PrePingMode{config.PrePingIdle, config.PrePingNever} {
		t.Run("pre-ping "+mode.String(), func(t *testing.T) {
			s := pgharness.Require(t, srv)
			ctx := context.Background()
			dsn := freshDB(t)
			p := newPool(t, dsn, func(c *config.Config) { c.PrePing = mode })
			if err := s.SetIdleSessionTimeout(ctx, 500*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.SetIdleSessionTimeout(ctx, 0) })
			// Requests spaced wider than the timeout: every connection is closed by the server
			// between two uses. With pre-ping never, only the peek at the socket stands
			// between the callers and the dead connections.
			l := startLoad(p, workers, 2, 1200*time.Millisecond)
			sleep(5 * time.Second)
			l.finish(t)
			l.checkWrites(t, dsn)
		})
	}
}

func TestFaultEveryBackendKilledRepeatedly(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	l := startLoad(p, workers, 2, 0)
	killed := 0
	for range 10 {
		sleep(500 * time.Millisecond)
		n, err := s.TerminateBackends(ctx)
		if err != nil {
			t.Fatal(err)
		}
		killed += n
	}
	l.finish(t)
	l.checkWrites(t, dsn)
	st := p.Stats()
	t.Logf("%d backends killed; stats %+v", killed, st)
	if killed < 10 {
		t.Fatalf("only %d backends killed: the fault did not happen", killed)
	}
}

func TestFaultServerRestartedUnderLoad(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	l := startLoad(p, workers, 2, 10*time.Millisecond)
	sleep(500 * time.Millisecond)
	for _, down := range []time.Duration{time.Second, 3 * time.Second} {
		if err := s.Restart(ctx, down); err != nil {
			t.Fatal(err)
		}
		sleep(time.Second)
	}
	l.finish(t)
	l.checkWrites(t, dsn)
	st := p.Stats()
	t.Logf("stats %+v", st)
	if st.Paced == 0 {
		t.Fatal("no connection paced: a server that refused connects while it restarted is the outage pacing is for")
	}
}

// Every second the network swallows the server's answers for 300 ms, then resets every flow
// (a load balancer failing over, a NAT losing its state under load): connects made during a
// stall fail when it ends, while the server answers every other. That is no outage, and
// pacing new connections for 10 s after each stall only slowed the pool's recovery
// (faultbench: 74 of 80 connections paced, a read failed at its 10 s deadline, p99 9.2 s).
func TestFaultAnswersStalledThenFlowsReset(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), nil)
	l := startLoad(p, workers, 2, 10*time.Millisecond)
	reset := 0
	for range 6 {
		sleep(700 * time.Millisecond)
		proxy.StallResponses()
		sleep(300 * time.Millisecond)
		reset += proxy.ResetAll()
		proxy.Resume()
	}
	sleep(time.Second)
	l.finish(t)
	l.checkWrites(t, dsn)
	st := p.Stats()
	t.Logf("6 stalls, %d flows reset; stats %+v", reset, st)
	if st.Retries.NotSent+st.Retries.ConnLost == 0 || reset < 6 {
		t.Fatalf("%d flows reset, %d retries: the fault did not happen", reset, st.Retries.NotSent+st.Retries.ConnLost)
	}
	if st.Paced != 0 {
		t.Fatalf("%d connections paced: a stall ended by resets, with the server answering, was taken for an outage", st.Paced)
	}
}

func TestFaultServerDownAtStart(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn := freshDB(t)
	if err := s.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		sleep(3 * time.Second)
		started <- s.StartServer(ctx)
	}()
	t.Cleanup(func() { s.StartServer(ctx) })
	// New verifies connectivity with the retry policy: it rides through the cold start.
	p := newPool(t, dsn, nil)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	l := startLoad(p, workers, 2, 0)
	sleep(time.Second)
	l.finish(t)
	l.checkWrites(t, dsn)
	if r := p.Stats().Retries.NotSent; r == 0 {
		t.Fatal("New did not retry: the server was not down when it started")
	}
}

func TestFaultIdleFlowsBlackholed(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	const pingTimeout = time.Second
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) { c.PingTimeout = pingTimeout })

	// Fill the pool with connections, then let every flow sit idle past the NAT's threshold.
	l := startLoad(p, workers, 2, 0)
	sleep(time.Second)
	l.finish(t)
	idle := p.Stats().IdleConns
	proxy.BlackholeIdle(1500 * time.Millisecond)
	sleep(2 * time.Second)

	l = startLoad(p, workers, 2, 0)
	sleep(3 * time.Second)
	l.finish(t)
	l.checkWrites(t, dsn)
	st := p.Stats()
	t.Logf("%d idle connections black-holed; longest request %v with PingTimeout %v; stats %+v", idle, l.maxWait, pingTimeout, st)
	if st.FailedPings == 0 {
		t.Fatal("no ping failed: the black hole did not happen")
	}
	// Each caller pays at most one ping timeout: after the first failure every connection
	// idle as long is condemned without a ping.
	if st.FailedPings > int64(workers+2) {
		t.Fatalf("%d failed pings for %d callers: callers pinged one dead connection after another", st.FailedPings, workers+2)
	}
}

func TestFaultThroughPgBouncerTransactionMode(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn := freshDB(t)
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	bouncer := pgharness.WithDatabase(s.BouncerDSN(), name) + "&pooler=transaction"
	p := newPool(t, bouncer, nil)
	if p.Config().Pooler != config.PoolerTransaction {
		t.Fatal("pooler mode not set")
	}
	// Many distinct statements: with pgx's default statement cache these collide across
	// server connections behind PgBouncer 1.18 (see the config package's test).
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, workers*100)
	for w := range workers {
		wg.Go(func() {
			for i := range 100 {
				var v string
				q := fmt.Sprintf("SELECT v /* %d */ FROM kv WHERE k = $1", i%10)
				errs <- p.QueryRow(ctx, q, 1+(w+i)%100).Scan(&v)
			}
		})
	}
	l := startLoad(p, workers, 2, 0)
	wg.Wait()
	sleep(time.Second)
	l.finish(t)
	l.checkWrites(t, dsn)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestFaultPoolExhausted(t *testing.T) {
	dsn := freshDB(t)
	ctx := context.Background()
	p := newPool(t, dsn, func(c *config.Config) {
		c.Size, c.Overflow, c.AcquireTimeout = 2, 1, 300*time.Millisecond
		c.OverflowIdleTimeout = 0 // SQLAlchemy's rule: an overflow connection closes on return
	})
	var held []pgx.Tx
	for range 3 {
		tx, err := p.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tx)
	}
	// Callers beyond Size+Overflow wait, then time out at AcquireTimeout with the pool's state,
	// whatever their context: one that never ends, an HTTP request's (cancelable, no
	// deadline), or one whose deadline comes after AcquireTimeout.
	// Should the wait not end at AcquireTimeout, the later deadline ends both callers, and
	// their errors say so.
	later, cancelLater := context.WithTimeout(ctx, 30*time.Second)
	defer cancelLater()
	cancelable, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(later, cancel)()
	callerCtxs := []context.Context{ctx, cancelable, later}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for i := range workers {
		wg.Go(func() {
			var v string
			errs[i] = p.QueryRow(callerCtxs[i%len(callerCtxs)], "SELECT v FROM kv WHERE k = 1").Scan(&v)
		})
	}
	wg.Wait()
	for i, err := range errs {
		var pte *pool.TimeoutError
		if !errors.Is(err, pool.ErrPoolTimeout) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &pte) {
			t.Fatalf("caller %d: want ErrPoolTimeout, got %v", i, err)
		}
		if pte.Bound != "AcquireTimeout 300ms" {
			t.Fatalf("caller %d: the wait ended at %q, want AcquireTimeout", i, pte.Bound)
		}
		if pte.Total != 3 || pte.InUse != 3 || pte.Idle != 0 || pte.Max != 3 || pte.Waiting < 1 || pte.LastErr != nil {
			t.Fatalf("wrong pool state in %v", pte)
		}
	}
	t.Logf("callers saw: %v", errs[0])

	// Released connections go back, and the overflow one is closed: at most Size idle.
	for _, tx := range held {
		tx.Rollback(ctx)
	}
	waitFor(t, func() bool { s := p.Stats(); return s.AcquiredConns == 0 && s.TotalConns == 2 })
	st := p.Stats()
	if st.IdleConns != 2 || st.OverflowClosed != 1 || st.AcquireTimeouts != workers {
		t.Fatalf("after release: %+v", st)
	}
	// And the pool still works.
	var v string
	if err := p.QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v); err != nil {
		t.Fatal(err)
	}
}

func TestFaultDatabaseDownIsNotAnExhaustedPool(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn := freshDB(t)
	p := newPool(t, dsn, func(c *config.Config) {
		c.Retry.MaxElapsed = time.Second
	})
	if err := s.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.StartServer(ctx) })
	// Close the pool's idle connection so that the next call must connect.
	p.Pgx().Reset()
	_, err := p.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("a statement succeeded on a stopped server")
	}
	if errors.Is(err, pool.ErrPoolTimeout) {
		t.Fatalf("a stopped server reported as an exhausted pool: %v", err)
	}
	var re *retry.Error
	if !errors.As(err, &re) || re.Attempts < 2 {
		t.Fatalf("want a *retry.Error after several attempts, got %v", err)
	}
	t.Logf("caller saw: %v", err)
	// Connects to a stopped server are refused, or, through Docker's port proxy, accepted and
	// reset: either way a confirmed outage, and the next call's connects are paced.
	if _, err := p.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a statement succeeded on a stopped server")
	}
	if st := p.Stats(); st.Paced == 0 {
		t.Fatalf("no connect paced after %d attempts on a stopped server: the outage was not confirmed", re.Attempts)
	}
	if err := s.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFaultAmbiguousCommit(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	// Without resolution, a lost COMMIT stays unknown (with it, the pool asks the server: see
	// resolve_fault_test.go).
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) { c.Size, c.Overflow = 1, 0 },
		pool.WithoutCommitResolution())
	ctx := context.Background()
	calls := 0
	err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		calls++
		if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ('ambiguous')"); err != nil {
			return err
		}
		// COMMIT will reach the server, which commits; its answer will not come back, and the
		// connection is then reset.
		proxy.StallResponses()
		time.AfterFunc(500*time.Millisecond, func() { proxy.ResetAll(); proxy.Resume() })
		return nil
	})
	var amb *pool.AmbiguousCommitError
	if !errors.As(err, &amb) {
		t.Fatalf("want *AmbiguousCommitError, got %v", err)
	}
	if calls != 1 {
		t.Fatalf("the transaction function ran %d times: a lost COMMIT was retried", calls)
	}
	var n int
	direct := newPool(t, dsn, nil)
	if err := direct.QueryRow(ctx, "SELECT count(*) FROM writes WHERE key = 'ambiguous'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows = %d (err %v), want exactly 1: the COMMIT did happen, once", n, err)
	}
	t.Logf("caller saw: %v", err)
}

// newProxy starts a fault proxy in front of the server, closed when t ends.
func newProxy(t testing.TB) *faultproxy.Proxy {
	t.Helper()
	return faultproxy.Start(t, pgharness.Require(t, srv).Addr())
}

// waitFor polls cond for up to 10 s: the pool returns connections asynchronously.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 100 {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition never became true")
}
