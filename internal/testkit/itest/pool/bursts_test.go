package pool_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
// every 500 ms. The pool opens its overflow for the first burst and keeps it through the
// next ones: in the whole run at most Size + Overflow connections are opened, counted by the
// pool and by the server. Once the bursts stop, the overflow closes after
// OverflowIdleTimeout, down to Size.
func TestBurstsDoNotChurnConnections(t *testing.T) {
	dsn := freshDB(t)
	sessions := newServerSessions(t, dsn)
	before := sessions.count(t)
	const size, overflow, callers, bursts = 4, 8, 40, 10
	const overflowIdle = 2 * time.Second // longer than the gap between bursts
	p := newPool(t, dsn, func(c *config.Config) {
		c.Size, c.Overflow, c.OverflowIdleTimeout = size, overflow, overflowIdle
	})

	ctx := t.Context()
	var mu sync.Mutex
	var waits []time.Duration
	var failed []error
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for b := range bursts {
		var wg sync.WaitGroup
		for w := range callers {
			wg.Go(func() {
				start := time.Now()
				var v string
				err := p.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", 1+(b*callers+w)%100).Scan(&v)
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
	st := p.Stats()
	// Once the bursts stop, the overflow goes after OverflowIdleTimeout, and Size stay.
	var after pool.Stats
	waitFor(t, func() bool { after = p.Stats(); return after.TotalConns == size })
	if after.OverflowClosed != overflow || after.IdleConns != size || after.Opened != st.Opened {
		t.Fatalf("after the bursts: %+v", after)
	}
	p.Close()
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(failed), len(waits), failed[0])
	}
	// The server counts each session once its backend has reported: wait until it has seen
	// the pool's connections (not for more: a churning pool would show here too).
	var server int64
	waitFor(t, func() bool { server = sessions.count(t) - before; return server >= st.Opened })
	slices.Sort(waits)
	t.Logf("%d requests in %d bursts of %d: opened %d (server: %d sessions), overflow closed %d during the bursts and %d after; p50 %v, p99 %v, max %v",
		len(waits), bursts, callers, st.Opened, server, st.OverflowClosed, after.OverflowClosed,
		waits[len(waits)/2], waits[len(waits)*99/100], waits[len(waits)-1])
	if st.Opened > size+overflow || server > size+overflow {
		t.Fatalf("opened %d connections (server: %d sessions) for bursts of %d callers, limit Size+Overflow = %d: the overflow was closed between bursts",
			st.Opened, server, callers, size+overflow)
	}
}
