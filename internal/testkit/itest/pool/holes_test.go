package pool_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// outcome is what a call run by within did.
type outcome struct {
	done     bool           // the call returned (or panicked) before the watchdog fired
	panicked any            // the panic value, if it panicked
	stack    string         // the panicking goroutine's stack
	took     time.Duration  // how long it ran, when done
	late     <-chan outcome // when not done: the outcome, once the call ends
}

// whenDone logs how long a call that outlived its watchdog really took, waiting at most d more.
func (o outcome) whenDone(t testing.TB, d time.Duration) {
	t.Helper()
	if o.done {
		return
	}
	select {
	case l := <-o.late:
		t.Logf("it returned after %v (panic: %v)", l.took.Round(time.Millisecond), l.panicked)
	case <-time.After(d):
		t.Logf("it had not returned %v after the watchdog", d)
	}
}

// within runs call in its own goroutine and waits at most watchdog for it. A panic is recovered
// and reported in the outcome (the test binary survives it). When the watchdog fires, the
// pool's goroutines are logged and done is false; the call keeps running, so the caller must
// lift the fault that holds it before the test's cleanup closes the pool.
func within(t testing.TB, watchdog time.Duration, call func()) outcome {
	t.Helper()
	ch := make(chan outcome, 1)
	start := time.Now()
	go func() {
		o := outcome{done: true}
		defer func() {
			if r := recover(); r != nil {
				o.panicked, o.stack = r, string(stackOf(false))
			}
			o.took = time.Since(start)
			ch <- o
		}()
		call()
	}()
	timer := time.NewTimer(watchdog)
	defer timer.Stop()
	select {
	case o := <-ch:
		return o
	case <-timer.C:
		t.Logf("still running after %v; goroutines of the pool:\n%s", watchdog, poolGoroutines())
		return outcome{took: watchdog, late: ch}
	}
}

// mustReturn fails t unless o is a call that returned without panicking; what names the call.
func mustReturn(t testing.TB, what string, o outcome, watchdog time.Duration) {
	t.Helper()
	switch {
	case o.panicked != nil:
		t.Fatalf("%s panicked after %v: %v\n%s", what, o.took.Round(time.Millisecond), o.panicked, o.stack)
	case !o.done:
		t.Fatalf("%s did not return within %v", what, watchdog)
	}
	t.Logf("%s returned after %v", what, o.took.Round(time.Millisecond))
}

func stackOf(all bool) []byte {
	buf := make([]byte, 1<<20)
	return buf[:runtime.Stack(buf, all)]
}

// poolGoroutines returns the stacks of the goroutines that run code of pgsteady or pgx (not
// counting the test's own frames).
func poolGoroutines() string {
	var out []string
	for _, g := range strings.Split(string(stackOf(true)), "\n\n") {
		if isPoolGoroutine(g) {
			out = append(out, g)
		}
	}
	return strings.Join(out, "\n\n")
}

// isPoolGoroutine reports whether the goroutine stack g runs or was started by pgsteady's
// library code or pgx (frames of test files and of internal/ test tools do not count).
func isPoolGoroutine(g string) bool {
	for _, line := range strings.Split(g, "\n") {
		if strings.HasPrefix(line, "\t") {
			continue // file:line
		}
		f := strings.TrimPrefix(line, "created by ")
		switch {
		case strings.Contains(f, "_test."), strings.Contains(f, "pgsteady/internal/"):
		case strings.Contains(f, "github.com/pgsteady/pgsteady/"),
			strings.Contains(f, "github.com/jackc/pgx/"),
			strings.Contains(f, "github.com/jackc/puddle/"):
			return true
		}
	}
	return false
}

// count returns how many rows of table writes carry key, read over a pool of its own.
func count(t testing.TB, dsn, key string) int {
	t.Helper()
	p := newPool(t, dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	defer p.Close()
	var n int
	if err := p.QueryRow(context.Background(), "SELECT count(*) FROM writes WHERE key = $1", key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Hole 1: the re-acquire after a lost batch failed, and the next retry released a nil
// connection (nil pointer in (*Pool).release from (*batch).first).
func TestSendBatchRetryAfterFailedReacquireReturnsError(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) { c.Size, c.Overflow = 1, 0 })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue("SELECT pg_sleep(1)")
	br := p.Idempotent().SendBatch(ctx, b)
	// 300 ms in, the batch is running on the server: the proxy goes away, its flows are reset
	// and new connections are refused, so the batch is lost and cannot be sent again.
	time.AfterFunc(300*time.Millisecond, func() { proxy.Close() })

	var err error
	const watchdog = 15 * time.Second // 3 × the caller's deadline
	o := within(t, watchdog, func() { _, err = br.Exec() })
	mustReturn(t, "Exec of the batch results", o, watchdog)
	if err == nil {
		t.Fatal("Exec succeeded on a batch whose connection was reset and whose server is unreachable")
	}
	t.Logf("Exec: %v", err)
	o = within(t, watchdog, func() { br.Close() })
	mustReturn(t, "Close of the batch results", o, watchdog)
}

// Hole 2: a COMMIT that reached the server, whose answer never came back, reported as the
// caller's plain context error; a caller retrying plain errors writes twice.
func TestTxCommitCutByCallerIsAmbiguousWhenStored(t *testing.T) {
	cases := []struct {
		name string
		// end ends the caller's wait during the stalled COMMIT; it returns the caller's ctx.
		ctx func() (context.Context, func())
		// after says when to end it, from the moment the COMMIT's answer is swallowed.
		cancelAfter time.Duration
		watchdog    time.Duration
	}{
		{
			name: "deadline expires",
			ctx: func() (context.Context, func()) {
				return context.WithTimeout(context.Background(), 5*time.Second)
			},
			watchdog: 15 * time.Second,
		},
		{
			name: "ctx canceled",
			ctx: func() (context.Context, func()) {
				return context.WithCancel(context.Background())
			},
			cancelAfter: 700 * time.Millisecond,
			watchdog:    10 * time.Second,
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshDB(t)
			proxy := newProxy(t)
			p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
			t.Cleanup(func() { proxy.Resume(); proxy.ResetAll() })
			ctx, cancel := tc.ctx()
			defer cancel()
			key := "hole2-" + strconv.Itoa(i)
			calls := 0
			var err error
			o := within(t, tc.watchdog, func() {
				err = p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
					calls++
					if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", key); err != nil {
						return err
					}
					// COMMIT will reach the server, which commits; its answer never comes back.
					proxy.StallResponses()
					if tc.cancelAfter > 0 {
						time.AfterFunc(tc.cancelAfter, cancel)
					}
					return nil
				})
			})
			if !o.done {
				proxy.Resume()
				proxy.ResetAll()
			}
			mustReturn(t, "Tx", o, tc.watchdog)
			proxy.Resume()
			n := count(t, dsn, key)
			t.Logf("Tx: %v; fn ran %d times; row stored %d times", err, calls, n)
			if n > 1 {
				t.Fatalf("row stored %d times", n)
			}
			var amb *pool.AmbiguousCommitError
			if n == 1 && !errors.As(err, &amb) {
				t.Fatalf("the row was stored, but Tx returned %v (%T), not an *AmbiguousCommitError", err, err)
			}
			if n == 0 && err == nil {
				t.Fatal("Tx acknowledged a write that is not stored")
			}
		})
	}
}

// Hole 3a: AcquireTimeout did not bound the call; a refused port was retried for 15 s and the
// error did not say which bound ran out.
func TestAcquireTimeoutBoundsPingOnARefusedPort(t *testing.T) {
	s := pgharness.Require(t, srv)
	const acquireTimeout = 500 * time.Millisecond
	p := newPool(t, pgharness.WithAddr(s.DSN(), testhelp.RefusedAddr(t)), func(c *config.Config) {
		c.LazyStart = true
		c.AcquireTimeout = acquireTimeout
	})
	var err error
	const watchdog = 5 * time.Second
	o := within(t, watchdog, func() { err = p.Ping(context.Background()) })
	o.whenDone(t, 30*time.Second)
	mustReturn(t, "Ping", o, watchdog)
	t.Logf("Ping: %v", err)
	var pte *pool.TimeoutError
	if !errors.Is(err, pool.ErrPoolTimeout) || !errors.As(err, &pte) {
		t.Fatalf("want ErrPoolTimeout (a *TimeoutError), got %v (%T)", err, err)
	}
	// The error names the bound that ran out.
	if !strings.Contains(pte.Bound, "AcquireTimeout") || !strings.Contains(err.Error(), pte.Bound) {
		t.Errorf("the error does not name AcquireTimeout as the bound that ran out: %v", err)
	}
	if !errors.Is(pte.LastErr, syscall.ECONNREFUSED) {
		t.Errorf("want the last connection error (connection refused) in LastErr, got %v", pte.LastErr)
	}
}

// Hole 3b: with the database paused (connections accepted, nothing answered), a query without
// a caller deadline waited AcquireTimeout once per connect retry, up to MaxElapsed+AcquireTimeout.
// The timeouts are the defaults scaled down (AcquireTimeout 30 s → 2 s, ConnectTimeout 10 s →
// 1 s, PingTimeout 2 s → 500 ms), so that connect attempts fail inside one AcquireTimeout, as
// they do with the defaults.
func TestAcquireTimeoutBoundsAQueryOnAPausedDatabase(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn := freshDB(t)
	const acquireTimeout = 2 * time.Second
	p := newPool(t, dsn, func(c *config.Config) {
		c.AcquireTimeout = acquireTimeout
		c.ConnectTimeout = time.Second
		c.PingTimeout = 500 * time.Millisecond
	})
	time.Sleep(p.Config().PrePingAfter + 200*time.Millisecond) // the idle connection will be pinged
	if err := s.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	unpaused := false
	unpause := func() {
		if !unpaused {
			unpaused = true
			if err := s.Unpause(ctx); err != nil {
				t.Error(err)
			}
		}
	}
	t.Cleanup(unpause)

	var err error
	const watchdog = 3 * acquireTimeout
	o := within(t, watchdog, func() {
		var v string
		err = p.QueryRow(context.Background(), "SELECT v FROM kv WHERE k = 1").Scan(&v)
	})
	o.whenDone(t, 40*time.Second)
	unpause()
	mustReturn(t, "QueryRow on a paused database", o, watchdog)
	t.Logf("QueryRow: %v", err)
	if !errors.Is(err, pool.ErrPoolTimeout) {
		t.Errorf("want ErrPoolTimeout, got %v (%T)", err, err)
	}
}

// Hole 3c: a host name that does not exist (NXDOMAIN) was retried for 15 s. It cannot get better
// by waiting: the call must fail at once with the resolver's error.
//
// The name must not reach a real DNS server (tests send traffic to loopback only), so the test
// needs a lookup function of its own: see lookupNotFound.
func TestUnknownHostFailsFastAsPermanent(t *testing.T) {
	s := pgharness.Require(t, srv)
	p := newPoolWithLookup(t, pgharness.WithAddr(s.DSN(), "db.pgsteady.invalid:5432"), lookupNotFound, func(c *config.Config) {
		c.LazyStart = true
	})
	var err error
	const watchdog = 5 * time.Second
	o := within(t, watchdog, func() { err = p.Ping(context.Background()) })
	o.whenDone(t, 30*time.Second)
	mustReturn(t, "Ping", o, watchdog)
	t.Logf("Ping: %v", err)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("want the *net.DNSError (not found), got %v (%T)", err, err)
	}
	if r := p.Stats().Retries; r.NotSent+r.ConnLost > 0 {
		t.Fatalf("an unknown host was retried: %v", r)
	}
}

// lookupNotFound answers every name with NXDOMAIN, as a resolver does for a mistyped host.
func lookupNotFound(_ context.Context, host string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// Hole 4: Close waited forever for connections that callers still held (a Rows not closed, an
// acquired connection, a *sql.DB from StdDB not closed): a Kubernetes shutdown hung.
func TestCloseReturnsWhileConnectionsAreHeld(t *testing.T) {
	dsn := freshDB(t)
	ctx := context.Background()
	p := newPool(t, dsn, nil)

	// Far more rows than the socket buffers hold, so that reading them needs the connection.
	rows, err := p.Query(ctx, "SELECT i FROM generate_series(1, 5000000) i")
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no first row")
	}
	conn, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db := p.StdDB()
	if err := db.PingContext(ctx); err != nil { // database/sql keeps that connection idle
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			rows.Close()
			conn.Release()
			db.Close()
		}
	}
	t.Cleanup(release)

	// The default grace is pool.DefaultCloseGrace; 30 s is far past any grace a shutdown can
	// afford.
	const watchdog = 30 * time.Second
	o := within(t, watchdog, p.Close)
	if !o.done {
		release() // lets the Close above return, and the test end
	}
	mustReturn(t, "Close with a Rows, a connection and a *sql.DB held", o, watchdog)

	// What was held is dead now, and giving it back does not panic.
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a held connection still works after Close")
	}
	for rows.Next() {
	}
	if rows.Err() == nil {
		t.Error("rows held across Close ended without an error")
	}
	o = within(t, 10*time.Second, release)
	mustReturn(t, "releasing what was held", o, 10*time.Second)
	if _, err := p.Exec(ctx, "SELECT 1"); !errors.Is(err, pool.ErrClosed) {
		t.Errorf("Exec after Close: want ErrClosed, got %v", err)
	}
	// pgxpool destroys a released connection of a closed pool in the background.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st := p.Stats()
		if st.TotalConns == 0 && st.AcquiredConns == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections left 10 s after they were released: %+v", st)
		}
	}
}

// Hole 5: fn committed the transaction itself; Tx then failed with "tx is closed" although the
// row was stored.
func TestTxWhoseFnCommitsStoresOnceWithoutTxClosedError(t *testing.T) {
	dsn := freshDB(t)
	ctx := context.Background()
	p := newPool(t, dsn, nil)
	calls := 0
	err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		calls++
		if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ('hole5')"); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
	n := count(t, dsn, "hole5")
	t.Logf("Tx: %v; fn ran %d times; row stored %d times", err, calls, n)
	if n != 1 {
		t.Fatalf("row stored %d times, want 1", n)
	}
	if errors.Is(err, pgx.ErrTxClosed) {
		t.Fatalf("Tx reported %v for a transaction that committed", err)
	}
	if err != nil {
		t.Logf("(a clear error is allowed: %v)", err)
	}
}

// Hole 6: a flow that went dead while a statement was in flight, with no caller deadline, hung
// for about 15 minutes: the kernel retransmits unacknowledged data that long (tcp_retries2),
// and keepalive probes are not sent while data is unacknowledged. The pool's bound is the
// config's DeadFlowAfter (TCP keepalive for a flow waiting for an answer, TCP_USER_TIMEOUT for
// data not acknowledged).
//
// The fault must be one the kernel sees. The fault proxy's own stall or black hole cannot
// play it: the proxy's kernel acknowledges every byte, so neither keepalive nor
// TCP_USER_TIMEOUT ever fires, and only a read deadline could end the wait (which would also
// end long statements on a healthy flow). faultproxy.BlackHole drops the packets of the flows
// on the proxy's port in the kernel (nftables), as a NAT that forgot the flow or a vanished
// host does.
func TestStatementOnADeadFlowFailsWithinDeadFlowAfter(t *testing.T) {
	cases := []struct {
		name string
		sql  string
		// holeAfter is when the flow dies, from the start of the statement.
		holeAfter time.Duration
	}{
		// The statement is sent into a flow that is already dead: its bytes are never
		// acknowledged (TCP_USER_TIMEOUT's case; 15 minutes before the fix).
		{name: "statement sent into the dead flow", sql: "SELECT 1", holeAfter: 0},
		// The flow dies while the server works on the statement: the client has nothing
		// unacknowledged and waits for an answer (keepalive's case).
		{name: "answer lost while the server works", sql: "SELECT pg_sleep(1)", holeAfter: 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshDB(t)
			proxy := newProxy(t)
			p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
				c.Size, c.Overflow = 1, 0
				c.KeepAlive = time.Second // DeadFlowAfter: 1 s + 3 probes 1 s apart
			})
			cfg := p.Config()
			bound := cfg.DeadFlowAfter()
			_, port, err := net.SplitHostPort(proxy.Addr())
			if err != nil {
				t.Fatal(err)
			}
			portN, _ := strconv.Atoi(port)
			// The pool's one connection was just used (by New): no pre-ping will look at it.
			var mu sync.Mutex
			var hole *faultproxy.Hole
			// makeHole may run on a timer's goroutine, where t.Fatal must not be called.
			makeHole := func() {
				h, err := faultproxy.NewBlackHole(portN, faultproxy.DropExisting)
				if err != nil {
					t.Error(err)
					return
				}
				t.Cleanup(func() { h.Close() })
				mu.Lock()
				hole = h
				mu.Unlock()
			}
			if tc.holeAfter == 0 {
				makeHole()
			} else {
				timer := time.AfterFunc(tc.holeAfter, makeHole)
				defer timer.Stop()
			}
			var execErr error
			watchdog := 3 * bound
			o := within(t, watchdog, func() { _, execErr = p.Exec(context.Background(), tc.sql) })
			if !o.done {
				o.whenDone(t, 30*time.Second)
			}
			mu.Lock()
			if hole != nil {
				hole.Close() // lets a call still stuck finish, and the test end
			}
			mu.Unlock()
			mustReturn(t, "Exec on a flow that died", o, watchdog)
			t.Logf("Exec: %v (DeadFlowAfter %v)", execErr, bound)
			if execErr == nil {
				t.Fatal("Exec succeeded on a dead flow: the black hole did not happen")
			}
			if c := retry.Classify(execErr); c != retry.ConnLost {
				t.Errorf("want a lost connection (the statement may have run), got class %v: %v", c, execErr)
			}
		})
	}
}

// Hole 7: when the wait for a connection was spent pinging a dead (black-holed) connection, the
// timeout read like an exhausted pool ("total=1, idle=0, in use=1") with no cause. The host
// has vanished (new connections time out too), so the hedge that gives the ping up finds no
// other connection either.
func TestPoolTimeoutDuringADeadPingCarriesItsCause(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
		c.Size, c.Overflow = 1, 0
		c.AcquireTimeout = time.Second // shorter than PingTimeout (2 s) and ConnectTimeout
	})
	// The one connection goes idle past PrePingAfter, so it is pinged, into a black hole.
	_, port, err := net.SplitHostPort(proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	faultproxy.BlackHole(t, portN, faultproxy.DropAll)
	time.Sleep(p.Config().PrePingAfter + 500*time.Millisecond)

	const watchdog = 10 * time.Second
	o := within(t, watchdog, func() {
		var v string
		err = p.QueryRow(context.Background(), "SELECT v FROM kv WHERE k = 1").Scan(&v)
	})
	mustReturn(t, "QueryRow", o, watchdog)
	t.Logf("QueryRow: %v", err)
	if err == nil {
		// The pool may have replaced the dead connection in time; then there is no timeout
		// to judge, and the test proves nothing.
		t.Fatal("the query succeeded: the ping did not take the whole AcquireTimeout")
	}
	var pte *pool.TimeoutError
	if !errors.Is(err, pool.ErrPoolTimeout) || !errors.As(err, &pte) {
		t.Fatalf("want ErrPoolTimeout, got %v (%T)", err, err)
	}
	if pte.LastErr == nil {
		t.Fatalf("the timeout does not say the wait was a ping into a dead connection: %v", err)
	}
}

// newPoolWithLookup builds a pool like newPool whose connections resolve host names with
// lookup.
func newPoolWithLookup(t testing.TB, dsn string, lookup func(context.Context, string) ([]string, error), edit func(*config.Config)) *pool.Pool {
	t.Helper()
	return newPool(t, dsn, edit, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.LookupFunc = lookup }))
}
