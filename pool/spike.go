package pool

import (
	"context"
	"time"
)

// Spikes. When a burst of callers finds no idle connection, pgxpool opens one for each of them
// up to MaxConns: every caller of the burst pays a connect (TLS and authentication, tens of
// milliseconds on a cloud database, and CPU on both ends while many open at once), though the
// connections in use come back within a millisecond or two. HikariCP's answer ("Welcome to the
// Jungle": 50 threads end with 5 connections where other pools end with 45) is to have callers
// wait for a returning connection while connections are added a few at a time. The pool does
// the same with what it measures: with n connections in use, each held h on average, and w
// callers waiting, waiting is quicker than opening as long as n connections serve the w
// callers within one connect time c (w·h/n < c), so it lets callers open only
// floor(w·h/c) + 1 - n connections at once: beyond Size one at a time while h < c (a burst of
// short requests: the handshakes would cost more than the wait), otherwise at most n (the
// pool at most doubles per connect time), and has the others wait for a
// connection to come back; each connect time they look again, counting h as at least how
// long they have waited if no connection came back meanwhile (to anyone).

// awaitReturn waits, when no connection is idle and one could be opened, until a connection
// comes back or is destroyed (one in use that broke never comes back), or the pool needs more
// connections than are being opened (see above), or ctx ends. It does nothing when a connection is idle or the pool is full (pgxpool then hands out
// the idle one, or queues the caller for the next one back), or none is in use.
func (p *Pool) awaitReturn(ctx context.Context) {
	p.returnWaiters.Add(1)
	defer p.returnWaiters.Add(-1)
	var t *time.Timer
	begin, returns := time.Now(), p.returns.Load()
	for {
		s := p.pgx.Stat()
		inUse := int64(s.AcquiredConns())
		connect, hold := p.connectTime.get(), p.holdTime.get()
		if s.IdleConns() > 0 || int(s.TotalConns()) >= p.cfg.MaxConns() || inUse == 0 || connect == 0 {
			return
		}
		if t != nil && p.returns.Load() == returns {
			hold = max(hold, time.Since(begin)) // nothing came back meanwhile: held at least that long
		}
		if int64(s.ConstructingConns()) < toOpen(p.returnWaiters.Load(), inUse, hold, connect, int(s.TotalConns()) < p.cfg.Size) {
			return
		}
		if t == nil {
			p.stats.returnWaits.Add(1)
			t = time.NewTimer(connect)
			defer t.Stop()
		} else {
			t.Reset(connect)
		}
		select {
		case <-p.returned:
			return
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// toOpen is how many connections callers may be opening at once when waiters callers wait,
// inUse connections are in use, each held hold on average, and a connect takes connect:
// enough that inUse plus them serve the waiters within a connect time; beyond Size (not
// belowSize), one at a time while connections come back quicker than one opens (HikariCP adds
// one at a time too), and otherwise at most inUse.
func toOpen(waiters, inUse int64, hold, connect time.Duration, belowSize bool) int64 {
	limit := int64(1)
	if belowSize || hold >= connect {
		limit = inUse
	}
	return min(waiters*int64(hold)/int64(connect)+1-inUse, limit)
}

// returnedOne tells a caller waiting in awaitReturn, if any, that a connection came back.
func (p *Pool) returnedOne() {
	if p.returnWaiters.Load() > 0 {
		p.returns.Add(1)
		p.wakeReturnWaiter()
	}
}

// wakeReturnWaiter ends the wait of a caller in awaitReturn, if any: a connection came back,
// or one was destroyed (one in use that broke never comes back; the caller opens one in its
// place).
func (p *Pool) wakeReturnWaiter() {
	select {
	case p.returned <- struct{}{}:
	default:
	}
}
