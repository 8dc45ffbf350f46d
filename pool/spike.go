package pool

import (
	"context"
	"sync/atomic"
	"time"
)

// Spikes. When a burst of callers finds no idle connection, pgxpool opens one for each of them
// up to MaxConns: every caller of the burst pays a connect (TLS and authentication, tens of
// milliseconds on a cloud database, and CPU on both ends while many open at once), though the
// connections in use come back within a millisecond or two. HikariCP's answer ("Welcome to the
// Jungle": 50 threads end with 5 connections where other pools end with 45) is to have callers
// wait for a returning connection while connections are added in the background. The pool
// does the same with what it measures:
//   - Below Size it opens, in the background, a connection for each waiting caller (grow), and
//     the callers take whichever comes first, a connection coming back or a new one. A
//     connection opened below Size is kept and serves every later burst: waiting instead only
//     put the connect off to the next burst (a pool of Size 10 stayed at one to three
//     connections through a whole run of bursts), while a caller that opened paid the connect.
//   - Beyond Size, with n connections open, each held h on average, and w callers waiting,
//     waiting is quicker than opening as long as n connections serve the w callers within one
//     connect time c (w·h/n < c), so it lets callers open only floor(w·h/c) + 1 - n
//     connections at once: one at a time while h < c (a burst of short requests: the
//     handshakes would cost more than the wait), otherwise at most n (the pool at most doubles
//     per connect time), and has the others wait for a connection to come back; each connect
//     time they look again, counting h as at least how long they have waited if no connection
//     came back meanwhile (to anyone).
//
// Callers go to pgxpool only with a claim on an idle connection, or counted among the openers
// (claimIdle, openOne): callers of a burst that all saw a connection idle, or all saw that one
// more could open, went to pgxpool together, and each that found no idle connection there
// opened one (in a traced run, 28 started opening at once).

// claimIdle counts the caller among the claims, callers on their way to an idle connection,
// if that leaves none of them without one; once its acquire has returned, the caller counts
// itself in p.claimsDone. Callers that all saw a connection idle would otherwise all go to
// pgxpool together, and those that found none left there would each open one, whatever the
// rule above says. With pgxIdle, pgxpool's own count may show more: connections released by
// callers of Acquire, which the pool does not count (see connTable). Both counts only grow, so
// that a claim made and done meanwhile fails the compare-and-swap; the claims done are read
// before the idle connections, and a claimer takes its connection before it is done: a claim
// seen done is a connection seen taken.
func (p *Pool) claimIdle(pgxIdle bool) bool {
	for {
		n := p.claims.Load()
		claimed := n - p.claimsDone.Load()
		idle := p.conns.available()
		if pgxIdle {
			idle = max(idle, int64(p.pgx.Stat().IdleConns()))
		}
		if claimed >= idle {
			return false
		}
		if p.claims.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// awaitConn is the spike rule, for a caller about to acquire: it returns at once, with a claim
// on an idle connection, when one is idle and not claimed by another caller; else it waits
// until a connection comes back (and claims it), or the pool needs more connections than are
// being opened (see above: then the caller opens one), or a connection is lost (one in use
// that broke never comes back, or grow failed to open one: the caller opens one), or ctx ends.
// It does not wait when the pool is full (pgxpool queues the caller for the next connection
// back), or has no connection open. It returns where the caller counts itself once its
// acquire has returned (p.claimsDone or p.openingDone), if it counted the caller among the
// claims or the openers.
func (p *Pool) awaitConn(ctx context.Context) *atomic.Int64 {
	if p.claimIdle(false) {
		return &p.claimsDone
	}
	p.returnWaiters.Add(1)
	defer p.returnWaiters.Add(-1)
	var t *time.Timer
	begin, returns, lost := time.Now(), p.returns.Load(), p.lost.Load()
	for {
		if p.claimIdle(true) {
			return &p.claimsDone
		}
		if p.lost.Load() != lost {
			return nil // lost: open one
		}
		s := p.pgx.Stat()
		total, open := int(s.TotalConns()), int64(s.TotalConns()-s.ConstructingConns())
		connect, hold := p.connectTime.get(), p.holdTime.get()
		if total >= p.cfg.MaxConns() || open == 0 || connect == 0 {
			return nil
		}
		if t != nil && p.returns.Load() == returns {
			hold = max(hold, time.Since(begin)) // nothing came back meanwhile: held at least that long
		}
		switch {
		case total < p.cfg.Size:
			p.grow(int64(p.cfg.Size - total))
		case open < int64(p.cfg.Size):
			// Growing to Size: wait for those.
		case p.openOne(toOpen(p.returnWaiters.Load(), open, hold, connect)):
			return &p.openingDone
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
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// openOne counts the caller among the openers, callers on their way to open a connection
// beyond Size, if they are no more than limit with it (see claimIdle for the counting).
func (p *Pool) openOne(limit int64) bool {
	done := p.openingDone.Load()
	if p.opening.Add(1)-done <= limit {
		return true
	}
	p.openingDone.Add(1)
	return false
}

// toOpen is how many connections beyond Size callers may be opening at once when waiters
// callers wait, open connections are open (in use, or idle and claimed), each held hold on
// average, and a connect takes connect: enough that the open ones plus them serve the waiters
// within a connect time; one at a time while connections come back quicker than one opens
// (HikariCP adds one at a time too), and otherwise at most as many as are open.
func toOpen(waiters, open int64, hold, connect time.Duration) int64 {
	limit := int64(1)
	if hold >= connect {
		limit = open
	}
	return min(waiters*int64(hold)/int64(connect)+1-open, limit)
}

// grow opens in the background, for the callers waiting in awaitConn, as many connections
// as wait (up to room, the connections missing below Size) less those it is opening already:
// each is handed, once open, to the first caller waiting (see returnedOne), unless a
// connection in use comes back to it first. If one fails to open, the callers waiting stop
// waiting and open themselves, and learn why they cannot.
func (p *Pool) grow(room int64) {
	for !p.closed.Load() {
		n := p.growing.Load()
		if n >= min(room, p.returnWaiters.Load()) {
			return
		}
		if !p.growing.CompareAndSwap(n, n+1) {
			continue
		}
		p.bg.Go(func() {
			defer p.growing.Add(-1)
			c, err := p.pgx.Acquire(p.life)
			if err != nil {
				p.lost.Add(1)
				for range p.returnWaiters.Load() {
					p.wakeReturnWaiter()
				}
				return
			}
			p.giveBack(c, false)
		})
	}
}

// returnedOne tells a caller waiting in awaitConn, if any, that a connection came back.
func (p *Pool) returnedOne() {
	if p.returnWaiters.Load() > 0 {
		p.returns.Add(1)
		p.wakeReturnWaiter()
	}
}

// wakeReturnWaiter makes a caller waiting in awaitConn, if any, look again: a connection came
// back, or one was destroyed (one in use that broke never comes back: below Size one opens in
// its place, beyond Size the caller may open one), or grow failed to open one.
func (p *Pool) wakeReturnWaiter() {
	select {
	case p.returned <- struct{}{}:
	default:
	}
}
