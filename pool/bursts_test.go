package pool_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// Bursts on the fake server, in fake time: every read is held burstHold, every connect takes
// burstConnect, and burstCallers callers fire together every 500 ms (issue 22's schedule).
const (
	burstCallers = 40
	burstHold    = time.Millisecond
	burstConnect = 15 * time.Millisecond
)

// burstPool is a pool on a fake server whose reads take burstHold (a minute with pg_sleep)
// and whose connects take burstConnect.
func burstPool(t *testing.T, edit func(*config.Config)) (*pool.Pool, *pgfake.Server) {
	t.Helper()
	s := fakeServer(t, func(q pgfake.Query) pgfake.Reply {
		if strings.HasPrefix(q.SQL, "SELECT v") {
			if strings.Contains(q.SQL, "pg_sleep") {
				time.Sleep(time.Minute)
			}
			time.Sleep(burstHold)
			return pgfake.Rows([]string{"v"}, []any{"x"})
		}
		return pgfake.Default(q)
	})
	slowDial := pool.WithPgxConfig(func(pc *pgxpool.Config) {
		pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			time.Sleep(burstConnect)
			return s.Dial(ctx, network, addr)
		}
	})
	return fakePool(t, s, edit, slowDial), s
}

// fireBursts runs n bursts of burstCallers reads on p, 500 ms apart, and fails the test on
// an error.
func fireBursts(t *testing.T, p *pool.Pool, n int) {
	t.Helper()
	for range n {
		var wg sync.WaitGroup
		for range burstCallers {
			wg.Go(func() {
				var v string
				if err := p.QueryRow(t.Context(), "SELECT v FROM kv WHERE k = $1", 1).Scan(&v); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		time.Sleep(500 * time.Millisecond)
	}
}

// A pool below Size that a burst finds without an idle connection opens the connections
// missing up to Size: each is kept, and serves every later burst, so waiting for a connection
// to come back instead gains nothing past the first burst. (The rule for overflow, whether
// waiting is quicker than opening, kept this pool at three or four connections through every
// burst, and in faultbench a slow connect once measured kept it at one or two.) No more are
// opened: ten connections serve 40 reads held 1 ms within a connect time.
func TestABurstGrowsAPoolBelowSizeToSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := burstPool(t, func(c *config.Config) { c.Size, c.Overflow = 10, 20 })
		fireBursts(t, p, 5)
		if st := p.Stats(); st.Opened != 10 || st.TotalConns != 10 {
			t.Fatalf("after 5 bursts of %d reads held %v (connect %v): opened %d, open %d; want Size, 10",
				burstCallers, burstHold, burstConnect, st.Opened, st.TotalConns)
		}
	})
}

// A burst that finds Size connections idle, each enough to serve the burst within a connect
// time, opens none: callers that saw a connection idle take one only if no caller before them
// has claimed it, and the others wait for one to come back. (Callers that had all seen a
// connection idle went to pgxpool together, and those that found none left opened one each:
// 6 of 10 runs opened more, up to all 26 overflow connections.)
func TestABurstThatFindsEnoughIdleConnectionsOpensNone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, _ := burstPool(t, func(c *config.Config) { c.Size, c.Overflow, c.WarmUp = 4, 26, true })
		before := p.Stats()
		if before.IdleConns != 4 {
			t.Fatalf("after New with WarmUp: %d idle, want 4", before.IdleConns)
		}
		fireBursts(t, p, 100)
		if st := p.Stats(); st.Opened != before.Opened {
			t.Fatalf("100 bursts of %d reads held %v (connect %v) on 4 idle connections opened %d, want none (%d waited for a connection to come back)",
				burstCallers, burstHold, burstConnect, st.Opened-before.Opened, st.ReturnWaits)
		}
	})
}

// A caller that waits while the pool opens a connection for it in the background (below Size,
// the only connection busy) is told when that opening fails, and tries for itself: it learns
// why the server refuses, instead of waiting out its budget behind the busy connection and
// timing out with no reason given.
func TestACallerWaitingForABackgroundConnectLearnsWhyItFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, s := burstPool(t, func(c *config.Config) { c.Size, c.AcquireTimeout = 10, 3*time.Second })
		go p.Exec(t.Context(), "SELECT v FROM kv, pg_sleep(60)")
		synctest.Wait()
		s.Refuse(startingUp)
		var v string
		err := p.QueryRow(t.Context(), "SELECT v FROM kv WHERE k = $1", 1).Scan(&v)
		var te *pool.TimeoutError
		var pe *pgconn.PgError
		if !errors.As(err, &te) || !errors.As(te.LastErr, &pe) || pe.Code != "57P03" {
			t.Fatalf("err = %v, want a *TimeoutError whose LastErr is the server's refusal (57P03)", err)
		}
	})
}
