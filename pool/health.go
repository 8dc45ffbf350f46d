package pool

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
)

// peekAfter is the idle time below which not even the peek is done: a connection handed back
// and out again within a millisecond (a busy pool) is spared the system call.
const peekAfter = time.Millisecond

// check is what shouldPing does with a connection about to be handed out.
type check int

const (
	checkNone    check = iota // hand it out
	checkPeek                 // peek at the socket, ping if something is there
	checkPing                 // ping it
	checkReplace              // close it without a ping: it is presumed dead
)

// decide is the pre-acquire rule, a pure function: lastUsed and staleBefore are unix
// nanoseconds, idle is how long the connection has been idle, horizon the idle horizon (0:
// none).
func decide(cfg *config.Config, idle time.Duration, lastUsed, staleBefore int64, horizon time.Duration) check {
	switch {
	case lastUsed <= staleBefore:
		return checkReplace
	case horizon > 0 && idle >= horizon:
		return checkReplace
	case cfg.PingDue(idle):
		return checkPing
	case idle < peekAfter:
		return checkNone
	}
	return checkPeek
}

// shouldPing runs on every acquire, before pgxpool hands the connection out. It decides and does
// the pre-ping itself, so that the pool learns of failures; when it returns true pgxpool pings
// a connection that is already closed, which fails at once and makes pgxpool destroy it and
// try another.
func (p *Pool) shouldPing(ctx context.Context, params pgxpool.ShouldPingParams) bool {
	c := params.Conn
	st := p.conns.get(c)
	p.notIdle(st)
	idle := params.IdleDuration
	lastUsed := time.Now().Add(-idle).UnixNano()
	switch decide(&p.cfg, idle, lastUsed, p.conns.staleBefore.Load(), p.horizon.get()) {
	case checkNone:
		return false
	case checkPeek:
		// No ping due. A free check remains: a server that closed the connection (an
		// administrator's kill, an idle-session timeout, a restart) has already sent its FATAL
		// and FIN, which sit in the socket. Peeking finds them without a round trip.
		if st == nil || !st.peek.suspicious() {
			return false
		}
	case checkReplace:
		p.stats.replacedIdle.Add(1)
		p.kill(c, st, CloseStale)
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
	err := c.Ping(pctx)
	timedOut := pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
	cancel()
	if err == nil {
		return false
	}
	p.stats.failedPings.Add(1)
	if timedOut {
		// A ping that found no answer at all: the flow was black-holed after idle (a NAT or a
		// load balancer dropped it). Connections idle that long are unsafe from now on.
		p.learnHorizon(ctx, idle)
	}
	// Condemn the connections idle at least as long as this one, and with PrePingIdle every
	// connection that would need a ping now: whatever killed this one (a NAT's idle cut, a
	// restart, a mass kill) has most likely killed them too, and a fresh connection costs less
	// than one more ping timeout.
	cut := lastUsed
	if p.cfg.PrePing == config.PrePingIdle {
		cut = max(cut, time.Now().Add(-p.cfg.PrePingAfter).UnixNano())
	}
	raise(&p.conns.staleBefore, cut)
	p.lastConnErr.set(fmt.Errorf("pre-ping of a connection idle %v failed: %w", idle.Round(time.Millisecond), err))
	p.logs.info(ctx, p.log, "pgsteady: pre-ping failed", "idle", idle, "err", err)
	if p.obs != nil {
		p.obs.PingFailed(ctx, idle, err)
	}
	p.kill(c, st, ClosePingFailed)
	return true
}

// kill closes c at once so that pgxpool's ping fails and it destroys the connection; why is
// the reason closing reports.
func (p *Pool) kill(c *pgx.Conn, st *connState, why string) {
	if st != nil {
		st.why.Store(&why)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Close(ctx) // marks pgx's connection closed and closes the socket, without waiting
}

// horizon is the idle horizon: connections idle at least this long are presumed
// black-holed. Zero means none is known.
type horizon struct {
	d       atomic.Int64 // nanoseconds
	fixed   bool         // set by hand: never learned or relaxed
	changed atomic.Int64 // unix nanoseconds of the last change
}

// relaxEvery is how long a learned horizon holds before the pool tries a longer one: the
// background keepalive then lets connections idle longer, and a ping that finds no answer
// there teaches the horizon again, at no caller's expense.
const relaxEvery = 30 * time.Second

func (h *horizon) get() time.Duration { return time.Duration(h.d.Load()) }

// learnHorizon records that a flow idle for idle was found black-holed.
func (p *Pool) learnHorizon(ctx context.Context, idle time.Duration) {
	if p.horizon.fixed || idle <= 0 {
		return
	}
	for {
		old := p.horizon.d.Load()
		if old != 0 && int64(idle) >= old {
			return
		}
		if p.horizon.d.CompareAndSwap(old, int64(idle)) {
			p.horizon.changed.Store(time.Now().UnixNano())
			p.log.WarnContext(ctx, "pgsteady: learned an idle horizon: connections idle this long are replaced before use and kept alive below it",
				"horizon", idle.Round(time.Millisecond))
			return
		}
	}
}

// relaxHorizon tries a horizon half again as long, and forgets it once it passes the point
// where TCP keepalive takes over (config.DeadFlowAfter).
func (p *Pool) relaxHorizon() {
	old := p.horizon.d.Load()
	if p.horizon.fixed || old == 0 {
		return
	}
	next := old + old/2
	if dead := p.cfg.DeadFlowAfter(); dead > 0 && next >= int64(dead) {
		next = 0
	}
	if p.horizon.d.CompareAndSwap(old, next) {
		p.horizon.changed.Store(time.Now().UnixNano())
		p.log.Info("pgsteady: idle horizon relaxed", "horizon", time.Duration(next).Round(time.Millisecond))
	}
}

// keepAlive runs while the pool is open. Once an idle horizon is known it pings every idle
// connection each half of the horizon, so that no flow stays idle long enough for the network
// to drop it: requests then find live connections instead of replacing them. (Every idle
// connection, not only the older ones: pgxpool counts idleness from the last release, and
// handing a connection back without a round trip would reset that count while the flow went
// on ageing.) A learned horizon that held for relaxEvery is relaxed.
func (p *Pool) keepAlive(stop <-chan struct{}) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for {
		h := p.horizon.get()
		next := time.Second
		if h > 0 {
			next = max(h/2, 10*time.Millisecond)
		}
		t.Reset(next)
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if h == 0 {
			continue
		}
		p.pingIdle(stop)
		if time.Now().UnixNano()-p.horizon.changed.Load() >= int64(relaxEvery) {
			p.relaxHorizon()
		}
	}
}

// pingIdle pings every idle connection. A ping that finds no answer teaches the horizon, as
// on the request path.
func (p *Pool) pingIdle(stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for _, c := range p.pgx.AcquireAllIdle(ctx) {
		st := p.conns.get(c.Conn())
		p.notIdle(st)
		var idle time.Duration
		if st != nil {
			idle = time.Since(time.Unix(0, st.lastUsed.Load()))
		}
		pctx, pcancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
		err := c.Ping(pctx)
		timedOut := pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
		pcancel()
		switch {
		case err == nil:
			p.stats.keepalivePings.Add(1)
		case timedOut:
			p.stats.keepaliveFailed.Add(1)
			p.learnHorizon(ctx, idle)
		default:
			p.stats.keepaliveFailed.Add(1)
		}
		if err != nil && p.obs != nil {
			p.obs.PingFailed(ctx, idle, err)
		}
		p.release(c)
	}
}

// raise sets a to v unless it already holds v or more, atomically: staleBefore only moves
// forward, whichever of several concurrent failures sets it.
func raise(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
