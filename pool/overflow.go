package pool

import (
	"cmp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// reapOverflow runs while the pool is open, when OverflowIdleTimeout > 0: a few times per
// OverflowIdleTimeout (at least once a second) it closes the connections beyond Size that
// have been idle that long. It sends nothing to the server but the goodbye of a connection it
// closes.
func (p *Pool) reapOverflow(stop <-chan struct{}) {
	t := time.NewTicker(reapEvery(p.cfg.OverflowIdleTimeout))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.closeIdleOverflow(now)
		}
	}
}

// reapEvery is how often reapOverflow looks: a quarter of the idle time, between 10 ms and 1 s.
func reapEvery(idle time.Duration) time.Duration {
	return min(max(idle/4, 10*time.Millisecond), time.Second)
}

// closeIdleOverflow closes connections idle since OverflowIdleTimeout before now, those idle
// longest first, while more than Size are open. It first looks without taking anything out
// of the pool; only when there is something to close does it take the idle connections (for
// the few microseconds it takes to choose: a caller arriving then may open a connection) and
// give back those it keeps. Giving back does not change what the pool knows of their idle
// time (connState.lastUsed, which shouldPing reads).
//
// Only connections the pool itself released are counted idle (see connTable): one released
// by a caller of Acquire is left to IdleTimeout.
func (p *Pool) closeIdleOverflow(now time.Time) {
	excess := int(p.pgx.Stat().TotalConns()) - p.cfg.Size
	if excess <= 0 {
		return
	}
	cut := now.Add(-p.cfg.OverflowIdleTimeout).UnixNano()
	due := func(st *connState) bool { return st != nil && st.idle.Load() && st.lastUsed.Load() <= cut }
	found := false
	p.conns.m.Range(func(_, v any) bool {
		found = due(v.(*connState))
		return !found
	})
	if !found {
		return
	}
	type idleConn struct {
		c  *pgxpool.Conn
		st *connState
	}
	var conns []idleConn
	for _, c := range p.pgx.AcquireAllIdle(p.life) {
		conns = append(conns, idleConn{c, p.conns.get(c.Conn())})
	}
	lastUsed := func(ic idleConn) int64 {
		if ic.st == nil {
			return now.UnixNano()
		}
		return ic.st.lastUsed.Load()
	}
	slices.SortFunc(conns, func(a, b idleConn) int { return cmp.Compare(lastUsed(a), lastUsed(b)) })
	for _, ic := range conns {
		if excess > 0 && due(ic.st) {
			excess--
			p.closeOverflow(ic.c, ic.st)
			continue
		}
		ic.c.Release() // st.idle and st.lastUsed stay as they were
	}
}
