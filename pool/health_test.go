package pool_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/pool"
)

func isPing(q pgfake.Query) bool { return strings.HasPrefix(q.SQL, "-- ping") }

// pingServer answers SELECT 'x', and a ping on connection n with broken(n) once broken is set
// (the zero Reply: an answer).
func pingServer(t *testing.T, broken *atomic.Pointer[func(conn int) pgfake.Reply]) *pgfake.Server {
	return fakeServer(t, func(q pgfake.Query) pgfake.Reply {
		if f := broken.Load(); f != nil && isPing(q) {
			return (*f)(q.Conn)
		}
		if q.SQL == "SELECT 'x'" {
			return oneRow
		}
		return pgfake.Reply{}
	})
}

func TestAnIdleHorizonIsLearnedOnlyWhenAFreshConnectionAnswers(t *testing.T) {
	hangFirst := func(conn int) pgfake.Reply {
		if conn == 1 {
			return pgfake.Hang()
		}
		return pgfake.Reply{}
	}
	hangAll := func(int) pgfake.Reply { return pgfake.Hang() }
	tests := []struct {
		name        string
		idle        time.Duration
		broken      func(conn int) pgfake.Reply
		wantChecks  int64
		wantLearned time.Duration
	}{
		{"a flow idle 10s found no answer, a fresh one answers: learned", 10 * time.Second, hangFirst, 1, 10 * time.Second},
		{"a fresh connection is slow too: the server is slow, nothing learned", 10 * time.Second, hangAll, 1, 0},
		{"idle under the floor (2 PingTimeout): a slow answer, not a black hole", 3 * time.Second, hangFirst, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var broken atomic.Pointer[func(int) pgfake.Reply]
				s := pingServer(t, &broken)
				p := fakePool(t, s, nil) // New leaves connection 1 idle
				time.Sleep(tt.idle)
				broken.Store(&tt.broken)
				if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
					t.Fatalf("Exec: %v, want it served by another connection", err)
				}
				synctest.Wait() // the check runs in the background
				st := p.Stats()
				if st.FailedPings != 1 || st.HorizonChecks != tt.wantChecks || st.IdleHorizon != tt.wantLearned {
					t.Fatalf("FailedPings %d, HorizonChecks %d, IdleHorizon %v; want 1, %d, %v",
						st.FailedPings, st.HorizonChecks, st.IdleHorizon, tt.wantChecks, tt.wantLearned)
				}
				if learned := st.HorizonsLearned == 1; learned != (tt.wantLearned > 0) {
					t.Fatalf("HorizonsLearned = %d", st.HorizonsLearned)
				}
			})
		})
	}
}

// Under a learned horizon the pool keeps flows alive with TCP keepalive, not SQL: an idle pool
// sends the server nothing. A horizon that held relaxEvery (30 s) is tried half again as long.
func TestALearnedHorizonSendsNothingAndRelaxes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var broken atomic.Pointer[func(int) pgfake.Reply]
		s := pingServer(t, &broken)
		p := fakePool(t, s, nil)
		time.Sleep(10 * time.Second)
		hang := func(conn int) pgfake.Reply {
			if conn == 1 {
				return pgfake.Hang()
			}
			return pgfake.Reply{}
		}
		broken.Store(&hang)
		if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := p.Stats().IdleHorizon; got != 10*time.Second {
			t.Fatalf("IdleHorizon = %v, want 10s", got)
		}
		sent := len(s.Seen(nil))
		time.Sleep(31 * time.Second) // the keepalive loop reads the horizon once a second
		if got := len(s.Seen(nil)) - sent; got != 0 {
			t.Errorf("an idle pool sent %d statements in 31s", got)
		}
		if got := p.Stats().IdleHorizon; got != 15*time.Second {
			t.Fatalf("IdleHorizon after 31s more = %v, want 15s", got)
		}
	})
}

func TestAPingThatFailsCondemnsTheConnectionsIdleAsLong(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var broken atomic.Pointer[func(int) pgfake.Reply]
		s := pingServer(t, &broken)
		p := fakePool(t, s, nil)
		for _, c := range testhelp.Hold(t, p, 3) {
			c.Release()
		}
		time.Sleep(2 * time.Second) // past PrePingAfter: each would be pinged
		killed := func(int) pgfake.Reply {
			return pgfake.Fatal("57P01", "terminating connection due to administrator command")
		}
		broken.Store(&killed)
		if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
			t.Fatalf("Exec: %v, want it served by a new connection", err)
		}
		st := p.Stats()
		if st.FailedPings != 1 || st.ReplacedIdle != 2 || count(s, "-- ping") != 1 {
			t.Fatalf("FailedPings %d, ReplacedIdle %d, pings %d; want 1, 2, 1: one ping, the others replaced without one",
				st.FailedPings, st.ReplacedIdle, count(s, "-- ping"))
		}
	})
}

func TestAFixedHorizonReplacesConnectionsIdlePastItWithoutAPing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var broken atomic.Pointer[func(int) pgfake.Reply]
		s := pingServer(t, &broken)
		p := fakePool(t, s, nil, pool.WithIdleHorizon(4*time.Second))
		time.Sleep(5 * time.Second)
		if _, err := p.Exec(t.Context(), "SELECT 'x'"); err != nil {
			t.Fatal(err)
		}
		st := p.Stats()
		if st.ReplacedIdle != 1 || count(s, "-- ping") != 0 || s.Accepted() != 2 {
			t.Fatalf("ReplacedIdle %d, pings %d, connections %d; want 1, 0, 2", st.ReplacedIdle, count(s, "-- ping"), s.Accepted())
		}
		time.Sleep(time.Minute)
		if got := p.Stats().IdleHorizon; got != 4*time.Second {
			t.Fatalf("a horizon set by hand moved to %v", got)
		}
	})
}
