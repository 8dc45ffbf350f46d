package pool_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// serverSessions counts the sessions the server established to the database of dsn
// (pg_stat_database.sessions, PostgreSQL 14+), read over an admin connection to another
// database, so that the reading itself is not counted.
type serverSessions struct {
	admin *pgx.Conn
	db    string
}

func newServerSessions(t *testing.T, dsn string) *serverSessions {
	t.Helper()
	s := pgharness.Require(t, srv)
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(t.Context(), s.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	return &serverSessions{admin: admin, db: cc.Database}
}

// count reads the counter afresh (the server flushes a backend's statistics lazily, so a
// session may show up to a second late).
func (s *serverSessions) count(t *testing.T) int64 {
	t.Helper()
	var n int64
	_, err := s.admin.Exec(t.Context(), "SELECT pg_stat_clear_snapshot()")
	if err == nil {
		err = s.admin.QueryRow(t.Context(), "SELECT coalesce(sessions, 0) FROM pg_stat_database WHERE datname = $1", s.db).Scan(&n)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBurstsDoNotChurnConnections runs the burst schedule of issue 22: 40 callers fire together
// every 500 ms. The pool opens its overflow only when waiting for a connection to come back
// would take longer than opening one, and keeps what it opened through the next bursts: in
// the whole run at most Size + Overflow connections are opened, counted by the pool and by
// the server. Once the bursts stop, the overflow closes after OverflowIdleTimeout, down to
// Size. Bare pgxpool and the seed's SQLAlchemy-like settings (database/sql with at most 30
// open and 10 idle: a connection given back while 10 are idle is closed, as QueuePool does
// with pool_size 10, max_overflow 20) run the same schedule, for comparison only.
func TestBurstsDoNotChurnConnections(t *testing.T) {
	dsn := freshDB(t)
	sessions := newServerSessions(t, dsn)
	const size, overflow, callers, bursts = 4, 8, 40, 10
	const overflowIdle = 2 * time.Second // longer than the gap between bursts
	before := sessions.count(t)
	p := newPool(t, dsn, func(c *config.Config) {
		c.Size, c.Overflow, c.OverflowIdleTimeout = size, overflow, overflowIdle
	})
	opened, server := runBurstsCounted(t, sessions, before, "pgsteady", p.QueryRow, func() int64 { return p.Stats().Opened }, func() {
		// Once the bursts stop, the overflow goes after OverflowIdleTimeout, and at most Size
		// stay.
		st := p.Stats()
		var after pool.Stats
		waitFor(t, func() bool { after = p.Stats(); return after.TotalConns <= size })
		if after.IdleConns != after.TotalConns || after.Opened != st.Opened {
			t.Errorf("after the bursts: %+v", after)
		}
		t.Logf("pgsteady: %d acquires waited for a connection to come back; overflow closed %d during the bursts and %d after",
			st.ReturnWaits, st.OverflowClosed, after.OverflowClosed-st.OverflowClosed)
		p.Close()
	})
	if opened > size+overflow || server > size+overflow {
		t.Fatalf("opened %d connections (server: %d sessions) for bursts of %d callers, limit Size+Overflow = %d: the overflow was closed between bursts",
			opened, server, callers, size+overflow)
	}

	before = sessions.count(t)
	bare, err := pgxpool.New(t.Context(), dsn) // caps at max(4, CPUs) and queues
	if err != nil {
		t.Fatal(err)
	}
	runBurstsCounted(t, sessions, before, fmt.Sprintf("pgxpool (MaxConns %d)", bare.Config().MaxConns), bare.QueryRow,
		func() int64 { return bare.Stat().NewConnsCount() }, bare.Close)

	before = sessions.count(t)
	seed, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	seed.SetMaxOpenConns(30)
	seed.SetMaxIdleConns(10)
	runBurstsCounted(t, sessions, before, "SQLAlchemy-like (database/sql, 30 open, 10 idle)",
		func(ctx context.Context, q string, args ...any) pgx.Row { return seed.QueryRowContext(ctx, q, args...) },
		func() int64 {
			st := seed.Stats()
			return int64(st.OpenConnections) + st.MaxIdleClosed + st.MaxIdleTimeClosed + st.MaxLifetimeClosed
		}, func() { seed.Close() })
}

// runBurstsCounted runs the burst schedule (40 callers, 10 bursts) through queryRow, then
// done (which closes the client), and logs and returns the connections the client opened and
// the sessions the server saw begin since it counted before (just before the client opened).
func runBurstsCounted(t *testing.T, sessions *serverSessions, before int64, name string, queryRow func(context.Context, string, ...any) pgx.Row,
	opened func() int64, done func()) (int64, int64) {
	t.Helper()
	waits, failed := runBursts(t, 40, 10, func(ctx context.Context, k int) error {
		var v string
		return queryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
	})
	n := opened()
	done()
	if len(failed) > 0 {
		t.Errorf("%s: %d of %d requests failed, first: %v", name, len(failed), len(waits), failed[0])
	}
	// The server counts each session once its backend has reported: wait until it has seen
	// the client's connections (not for more: a churning client would show here too).
	var server int64
	waitFor(t, func() bool { server = sessions.count(t) - before; return server >= n })
	t.Logf("%s: %d requests, %d failed: opened %d (server: %d sessions); %s", name, len(waits), len(failed), n, server, percentiles(waits))
	return n, server
}

// runBursts fires callers calls of query together, bursts times, one burst every 500 ms (or
// when the previous one has ended, if later), and returns how long each call took and the
// errors.
func runBursts(t *testing.T, callers, bursts int, query func(ctx context.Context, k int) error) (waits []time.Duration, failed []error) {
	ctx := t.Context()
	var mu sync.Mutex
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for b := range bursts {
		var wg sync.WaitGroup
		for w := range callers {
			wg.Go(func() {
				start := time.Now()
				err := query(ctx, 1+(b*callers+w)%100)
				mu.Lock()
				defer mu.Unlock()
				waits = append(waits, time.Since(start))
				if err != nil {
					failed = append(failed, err)
				}
			})
		}
		wg.Wait()
		<-tick.C
	}
	return waits, failed
}

// percentiles describes waits (which it sorts): p50, p99, max.
func percentiles(waits []time.Duration) string {
	if len(waits) == 0 {
		return "no requests"
	}
	slices.Sort(waits)
	return fmt.Sprintf("p50 %v, p99 %v, max %v", waits[len(waits)/2].Round(time.Microsecond),
		waits[len(waits)*99/100].Round(time.Microsecond), waits[len(waits)-1].Round(time.Microsecond))
}

// backend is one server session as pg_stat_activity shows it.
type backend struct {
	pid         int
	started     time.Time
	stateChange time.Time // when it last began or ended a statement
	query       string    // its last statement
}

// backends lists the client sessions of the database.
func (s *serverSessions) backends(t *testing.T) map[int]backend {
	t.Helper()
	if _, err := s.admin.Exec(t.Context(), "SELECT pg_stat_clear_snapshot()"); err != nil {
		t.Fatal(err)
	}
	rows, err := s.admin.Query(t.Context(), `SELECT pid, backend_start, coalesce(state_change, backend_start), coalesce(query, '')
		FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, s.db)
	if err != nil {
		t.Fatal(err)
	}
	bs := map[int]backend{}
	for rows.Next() {
		var b backend
		if err := rows.Scan(&b.pid, &b.started, &b.stateChange, &b.query); err != nil {
			t.Fatal(err)
		}
		bs[b.pid] = b
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return bs
}

// TestIdlePoolSendsNothing: after a warm-up, a pool with no callers sends no statement to the
// server (a serverless database such as Neon suspends only when no queries arrive) and opens
// no connection, while its background work runs: the overflow closing after
// OverflowIdleTimeout, pgxpool's health check, the keepalive loop with an idle horizon known
// (flows are kept alive by TCP keepalive, which the database does not see). The server says so:
// pg_stat_activity's state_change of every session stays as it was, and no session appears.
func TestIdlePoolSendsNothing(t *testing.T) {
	dsn := freshDB(t)
	sessions := newServerSessions(t, dsn)
	const size, overflow = 2, 6
	p := newPool(t, dsn, func(c *config.Config) {
		c.Size, c.Overflow, c.WarmUp = size, overflow, true
		c.OverflowIdleTimeout = time.Second
		c.HealthCheckPeriod = 500 * time.Millisecond
	}, pool.WithIdleHorizon(2*time.Second))
	ctx := t.Context()
	for range 3 { // bursts of reads held 200 ms (longer than a connect), so that the overflow opens too
		var wg sync.WaitGroup
		for w := range size + overflow {
			wg.Go(func() {
				var v string
				if err := p.QueryRow(ctx, "SELECT v FROM kv, pg_sleep(0.2) WHERE k = $1", 1+w).Scan(&v); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	opened := p.Stats().Opened
	before := sessions.backends(t)
	if len(before) <= size {
		t.Fatalf("the warm-up left %d sessions, want the overflow too", len(before))
	}
	// No callers: wait until the overflow has gone, then a little longer (several rounds of
	// every background loop).
	waitFor(t, func() bool { return p.Stats().TotalConns == size })
	time.Sleep(3 * time.Second)
	after := sessions.backends(t)
	st := p.Stats()
	t.Logf("sessions after the warm-up %d, after the quiet period %d; stats %+v", len(before), len(after), st)
	if st.Opened != opened {
		t.Errorf("the pool opened %d connections with no callers", st.Opened-opened)
	}
	for pid, b := range after {
		was, ok := before[pid]
		switch {
		case !ok:
			t.Errorf("session %d appeared with no callers (last statement %q)", pid, b.query)
		case !b.stateChange.Equal(was.stateChange):
			t.Errorf("session %d ran a statement with no callers: %q at %v (before: %q at %v)",
				pid, b.query, b.stateChange, was.query, was.stateChange)
		}
	}
	if len(after) != size {
		t.Errorf("%d sessions after the quiet period, want Size = %d", len(after), size)
	}
}

// TestWarmUpOpensSizeSessions: with WarmUp, New opens Size connections and the server sees
// Size sessions, not more (New's acquires raced pgxpool's own MinConns opening, and a Size of
// 4 opened 6).
func TestWarmUpOpensSizeSessions(t *testing.T) {
	t.Parallel()
	dsn := freshDB(t)
	sessions := newServerSessions(t, dsn)
	before := sessions.count(t)
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Size, cfg.WarmUp = 4, true
	p, err := pool.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	time.Sleep(time.Second) // the server's statistics of a session arrive up to a second late
	if got := sessions.count(t) - before; got != 4 {
		t.Fatalf("New with WarmUp and Size 4: the server saw %d sessions begin, want 4", got)
	}
	if s := p.Stats(); s.TotalConns != 4 {
		t.Fatalf("after New with WarmUp and Size 4: %d connections, want 4", s.TotalConns)
	}
}
