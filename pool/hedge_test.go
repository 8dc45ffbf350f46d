//go:build unix

package pool_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// hangFirst black-holes connection 1's pings: the pool's first connection, idle in the pool.
func hangFirst(conn int) pgfake.Reply {
	if conn == 1 {
		return pgfake.Hang()
	}
	return pgfake.Reply{}
}

// A pre-ping that has not answered within the hedge delay (here its floor, 50 ms: connects on
// a socket pair take microseconds) is given up: the caller gets a new connection and no
// caller waits PingTimeout, while the ping is settled in the background, found without an
// answer once PingTimeout has passed. The pool watches for the late answer on a second
// descriptor of the socket, which net.Pipe has not: this test runs on a real socket, in real
// time, and counts rather than times.
func TestAPrePingWithoutAnAnswerIsHedged(t *testing.T) {
	var broken atomic.Pointer[func(int) pgfake.Reply]
	s := pingServer(t, &broken)
	settled := make(chan pool.PingEvent, 1)
	p := fakePool(t, s, func(c *config.Config) { c.PrePing, c.PingTimeout = config.PrePingAlways, 300*time.Millisecond },
		pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = s.DialSocket }),
		pool.WithObserver(pingEvents{to: settled}))
	hang := hangFirst
	broken.Store(&hang)
	if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
		t.Fatalf("Exec: %v, want it served by a new connection", err)
	}
	if st := p.Stats(); st.HedgedPings != 1 || st.PingTimeoutWaits != 0 {
		t.Fatalf("HedgedPings %d, PingTimeoutWaits %d; want 1, 0", st.HedgedPings, st.PingTimeoutWaits)
	}
	select {
	case e := <-settled:
		if !errors.Is(e.Err, os.ErrDeadlineExceeded) {
			t.Fatalf("the hedged ping was settled with %v, want no answer within PingTimeout", e.Err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the hedged ping was not settled")
	}
	if st := p.Stats(); st.FailedPings != 1 {
		t.Fatalf("FailedPings %d, want 1", st.FailedPings)
	}
}

// pingEvents is a PingObserver that sends each failed ping to its channel, if it has room.
type pingEvents struct {
	pool.BaseObserver
	to chan<- pool.PingEvent
}

func (o pingEvents) PingFailed(_ context.Context, e pool.PingEvent) {
	select {
	case o.to <- e:
	default:
	}
}

// Where the pool cannot hedge a pre-ping (net.Pipe gives it no descriptor to watch an answer
// on), a caller waits the whole PingTimeout (2 s) for a ping that finds no answer, and
// PingTimeoutWaits counts it; unless the hedge delay reached PingTimeout anyway, because
// connects were measured to take half of it or more (then waiting is what the pool chose).
func TestACallerThatWaitedAPingTimeoutTheHedgeDelayWouldHaveSparedIsCounted(t *testing.T) {
	for _, tt := range []struct {
		name    string
		connect time.Duration
		want    int64
	}{
		{"connects take no time: the hedge delay (50 ms) was shorter: counted", 0, 1},
		{"connects take 1 s: the hedge delay (2 connects) reached PingTimeout: not counted", time.Second, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var broken atomic.Pointer[func(int) pgfake.Reply]
				s := pingServer(t, &broken)
				dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
					time.Sleep(tt.connect)
					return s.Dial(ctx, network, addr)
				}
				p := fakePool(t, s, nil, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = dial }))
				time.Sleep(3 * time.Second) // past PrePingAfter (1 s), under the horizon floor (4 s)
				hang := hangFirst
				broken.Store(&hang)
				if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
					t.Fatalf("Exec: %v, want it served by a new connection", err)
				}
				st := p.Stats()
				if st.FailedPings != 1 || st.HedgedPings != 0 || st.PingTimeoutWaits != tt.want {
					t.Fatalf("FailedPings %d, HedgedPings %d, PingTimeoutWaits %d; want 1, 0, %d",
						st.FailedPings, st.HedgedPings, st.PingTimeoutWaits, tt.want)
				}
			})
		})
	}
}
