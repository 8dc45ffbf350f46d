package pool

import (
	"context"
	"errors"
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
// none), and condemned whether a confirmed failover condemned the connection.
func decide(cfg *config.Config, idle time.Duration, lastUsed, staleBefore int64, condemned bool, horizon time.Duration) check {
	switch {
	case condemned, lastUsed <= staleBefore:
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
	now := time.Now().UnixNano()
	if st != nil {
		st.acquired.Store(now)
	}
	idle := params.IdleDuration
	if p.notIdle(st) {
		// pgxpool counts idleness from its last release, and closeIdleOverflow gives
		// connections back without using them: the pool's own count is the true one.
		idle = max(idle, time.Duration(now-st.lastUsed.Load()))
	}
	lastUsed := now - int64(idle)
	condemned := st != nil && st.opened <= p.conns.openedBefore.Load()
	switch decide(&p.cfg, idle, lastUsed, p.conns.staleBefore.Load(), condemned, p.horizon.get()) {
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
	start := time.Now()
	delay, wait := p.hedgeDelay(), p.cfg.PingTimeout
	if st != nil && st.peek.canHedge() {
		wait = delay
	}
	err := pingWithin(ctx, c, wait)
	if err == nil {
		p.pingRTT.observe(time.Since(start))
		return false
	}
	if errors.As(err, new(errPingTimeout)) {
		if wait < p.cfg.PingTimeout {
			p.hedge(c, st, idle, lastUsed, start)
			return true
		}
		if delay < p.cfg.PingTimeout {
			// Its caller waited the whole PingTimeout where the hedge delay was shorter: the
			// pool could not watch this connection's socket, so it could not hedge.
			p.stats.pingTimeoutWaits.Add(1)
		}
	}
	p.pingFailed(ctx, idle, lastUsed, err)
	p.kill(c, st, ClosePingFailed)
	return true
}

// pingFailed learns from a pre-ping of a connection idle for idle, last used at lastUsed (unix
// nanoseconds), that failed with err (an errPingTimeout if it found no answer within
// PingTimeout).
func (p *Pool) pingFailed(ctx context.Context, idle time.Duration, lastUsed int64, err error) {
	var timeout errPingTimeout
	timedOut := errors.As(err, &timeout)
	p.stats.failedPings.Add(1)
	switch {
	case timedOut && idle < horizonFloor(&p.cfg):
		// No answer from a flow idle so briefly is a slow server or a latency spike, not a
		// black hole: this connection goes, and nothing is learned.
	case timedOut:
		// A ping that found no answer at all on a flow idle this long: a NAT or a load
		// balancer may have dropped it, or the server may be slow. A fresh connection tells
		// which (see checkBlackHole). Meanwhile the connections idle at least the floor are
		// condemned: a fresh connection costs less than one more ping timeout each.
		raise(&p.conns.staleBefore, time.Now().Add(-horizonFloor(&p.cfg)).UnixNano())
		p.checkBlackHole(idle)
	default:
		// The server ended the session or the flow broke. Condemn the connections idle at
		// least as long as this one, and with PrePingIdle every connection that would need
		// a ping now: whatever killed this one (a restart, a mass kill, an idle-session
		// timeout) has most likely killed them too.
		cut := lastUsed
		if p.cfg.PrePing == config.PrePingIdle {
			cut = max(cut, time.Now().Add(-p.cfg.PrePingAfter).UnixNano())
		}
		raise(&p.conns.staleBefore, cut)
	}
	p.lastConnErr.set(fmt.Errorf("pre-ping of a connection idle %v failed: %w", idle.Round(time.Millisecond), err))
	p.logs.info(ctx, p.log, "pgsteady: pre-ping failed", "idle", idle, "err", err)
	if p.obs != nil {
		p.obs.PingFailed(ctx, PingEvent{Idle: idle, Err: err})
	}
}

// kill closes c at once so that pgxpool's ping fails and it destroys the connection; why is
// the reason closing reports.
func (p *Pool) kill(c *pgx.Conn, st *connState, why CloseReason) {
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
	d        atomic.Int64 // nanoseconds
	fixed    bool         // set by hand: never learned or relaxed
	changed  atomic.Int64 // unix nanoseconds of the last change
	checking atomic.Bool  // a checkBlackHole is under way
}

// horizonFloor is the shortest idle horizon the pool learns: twice PingTimeout (4 s by
// default). A flow that went unanswered for one PingTimeout after a shorter idle is told from a slow server by nothing the pool can see; the
// network hops that drop idle flows do so after minutes (AWS NAT gateway 350 s, Azure's load
// balancer 4 minutes).
func horizonFloor(cfg *config.Config) time.Duration { return 2 * cfg.PingTimeout }

// checkBlackHole confirms, in the background, that a ping that found no answer on a flow idle
// for idle met a black hole rather than a slow server: the horizon is learned only if a fresh
// connection to the same server answers a ping within half a PingTimeout. One check runs at a
// time; suspicions that arrive meanwhile are covered by it.
func (p *Pool) checkBlackHole(idle time.Duration) {
	if p.horizon.fixed || !p.horizon.checking.CompareAndSwap(false, true) {
		return
	}
	p.bg.Go(func() {
		defer p.horizon.checking.Store(false)
		ctx := p.life
		p.stats.horizonChecks.Add(1)
		answered, err := p.freshPing(ctx)
		if err != nil || answered >= p.cfg.PingTimeout/2 {
			p.logs.info(ctx, p.log, "pgsteady: a ping found no answer, and a fresh connection was slow too: the server is slow, no idle horizon learned",
				"idle", idle, "fresh_ping", answered, "err", err)
			return
		}
		p.learnHorizon(ctx, max(idle, horizonFloor(&p.cfg)), answered)
	})
}

// freshPing opens a connection as the pool would (its BeforeConnect included), pings it once
// within PingTimeout, closes it, and says how long the ping took.
func (p *Pool) freshPing(ctx context.Context) (time.Duration, error) {
	cc := p.probeCfg.ConnConfig.Copy()
	if p.probeCfg.BeforeConnect != nil {
		if err := p.probeCfg.BeforeConnect(ctx, cc); err != nil {
			return 0, err
		}
	}
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return 0, err
	}
	defer hardClose(c)
	t0 := time.Now()
	err = pingWithin(ctx, c, p.cfg.PingTimeout)
	return time.Since(t0), err
}

// pingWithin pings c, waiting at most d, and reports whether the ping ran out of d (rather
// than ctx ending or the connection failing) through context.DeadlineExceeded.
func pingWithin(ctx context.Context, c *pgx.Conn, d time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := c.Ping(pctx)
	if err != nil && pctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
		return errPingTimeout{err}
	}
	return err
}

// errPingTimeout is a ping that found no answer within PingTimeout.
type errPingTimeout struct{ err error }

func (e errPingTimeout) Error() string { return "no answer within the ping timeout: " + e.err.Error() }
func (e errPingTimeout) Unwrap() error { return e.err }

// relaxEvery is how long a learned horizon holds before the pool tries a longer one:
// connections idle longer are then pre-pinged instead of replaced, and a ping that finds no
// answer there (hedged: its caller waits the hedge delay, not PingTimeout) teaches the
// horizon again.
const relaxEvery = 30 * time.Second

func (h *horizon) get() time.Duration { return time.Duration(h.d.Load()) }

// learnHorizon records that a flow idle for idle was found black-holed, while a fresh
// connection answered in answered.
func (p *Pool) learnHorizon(ctx context.Context, idle, answered time.Duration) {
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
			p.stats.horizonsLearned.Add(1)
			p.log.WarnContext(ctx, "pgsteady: learned an idle horizon: connections idle this long are replaced before use and kept alive below it",
				"horizon", idle.Round(time.Millisecond), "confirmed_by", "a fresh connection answered a ping in "+answered.Round(time.Microsecond).String())
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

// keepAlive runs while the pool is open. Once an idle horizon is known it has the kernel keep
// every connection's flow alive under it: TCP keepalive probes after half the horizon of
// idleness, again each half horizon while the flow stays idle (see keepAliveFor). It sends the server no
// statement, so an idle service stays idle to the database (a serverless database such as
// Neon suspends only when no query arrives; keepalive SQL would keep it awake and billed),
// while the NATs and load balancers that drop idle flows see the probes. A learned horizon
// that held for relaxEvery is relaxed. The loop itself only reads the horizon once a second.
func (p *Pool) keepAlive(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	applied := time.Duration(0)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		h := p.horizon.get()
		if h != applied {
			every := p.keepAliveFor(h)
			p.conns.m.Range(func(_, v any) bool {
				v.(*connState).peek.keepAliveEvery(every)
				return true
			})
			applied = h
		}
		if h > 0 && time.Now().UnixNano()-p.horizon.changed.Load() >= int64(relaxEvery) {
			p.relaxHorizon()
		}
	}
}

// keepAliveFor is the TCP keepalive idle time under horizon h: half of it, or the config's
// KeepAlive when that is shorter or no horizon is known (h == 0); <= 0 when keepalives are
// disabled (KeepAlive < 0).
func (p *Pool) keepAliveFor(h time.Duration) time.Duration {
	if h == 0 || p.cfg.KeepAlive < 0 {
		return p.cfg.KeepAlive
	}
	return min(p.cfg.KeepAlive, h/2)
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
