package pool

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/xact"
)

// connState is what the pool knows of one open connection.
type connState struct {
	opened   int64                       // unix nanoseconds when it connected (set before it is shared)
	idle     atomic.Bool                 // counted in connTable.idle
	lastUsed atomic.Int64                // unix nanoseconds of its last release by the pool
	acquired atomic.Int64                // unix nanoseconds when it was last handed out
	why      atomic.Pointer[CloseReason] // why the pool condemned it, if it did
	// readOnlySession: its role or database makes its sessions read-only (pg_settings.source
	// said so after a 25006): its next 25006 is the application's without asking again.
	readOnlySession atomic.Bool
	peek            peeker // looks into the socket without reading from it
}

// connTable tracks the open connections, and how many of them are idle: pgxpool's hooks tell
// when a connection opens (AfterConnect), is handed out (ShouldPing runs on every acquire) and
// closes (BeforeClose); the pool's own release tells when it goes back. (pgxpool's AfterRelease
// hook would also tell, but it makes every release go through a new goroutine: a scheduling
// delay on every request.) A connection that a caller of Acquire releases itself is not counted
// idle, so the count errs low, and the closing of idle overflow connections errs lenient.
type connTable struct {
	m    sync.Map // *pgx.Conn -> *connState
	idle atomic.Int64
	// releasing counts the connections being given back: counted idle already, not yet in
	// pgxpool's hands (see available).
	releasing atomic.Int64

	// staleBefore (unix nanoseconds): a connection last used at or before this instant is
	// presumed dead without a ping, because a ping failed when this instant was set (the way
	// SQLAlchemy invalidates older connections after a disconnect; see shouldPing for the
	// instant chosen). Black-holed or killed connections cost a caller one ping timeout, not
	// one per connection.
	staleBefore atomic.Int64

	// openedBefore (unix nanoseconds): a connection opened at or before this instant is
	// replaced before its next use, and destroyed when given back: a failover was confirmed
	// when it was set (see failover.go). Connections busy at that moment are caught when they
	// come back, however recently they were used.
	openedBefore atomic.Int64
}

// available is how many idle connections pgxpool holds, as far as the pool counts: the idle
// ones less those still being given back (idle is read first, so that a release counted in
// it is either seen under way or complete).
func (t *connTable) available() int64 {
	idle := t.idle.Load()
	return idle - t.releasing.Load()
}

func (t *connTable) get(c *pgx.Conn) *connState {
	if v, ok := t.m.Load(c); ok {
		return v.(*connState)
	}
	return nil
}

// install wires the pool's hooks into pc, chained with the caller's (see [WithPgxConfig]):
// ShouldPing is the pool's alone (it decides what config's hook decides, and does the ping
// itself so that it learns of failures), and TCP_USER_TIMEOUT bounds dead flows in flight.
func (p *Pool) install(pc *pgxpool.Config) {
	pc.ConnConfig.DialFunc = withUserTimeout(pc.ConnConfig.DialFunc, p.cfg.DeadFlowAfter())
	userAfterConnect, userBeforeClose, userBeforeConnect := pc.AfterConnect, pc.BeforeClose, pc.BeforeConnect
	pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
		if err := p.beforeConnect(ctx); err != nil {
			return err
		}
		p.watchConnect(cc)
		if userBeforeConnect != nil {
			return userBeforeConnect(ctx, cc)
		}
		return nil
	}
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		now := time.Now().UnixNano()
		st := &connState{opened: now, peek: newPeeker(c)}
		st.lastUsed.Store(now)
		if h := p.horizon.get(); h > 0 {
			st.peek.keepAliveEvery(p.keepAliveFor(h))
		}
		p.learnExpectation(c.PgConn())
		p.conns.m.Store(c, st)
		if userAfterConnect != nil {
			if err := userAfterConnect(ctx, c); err != nil {
				p.conns.m.Delete(c)
				st.peek.close()
				return err
			}
		}
		return nil
	}
	pc.BeforeClose = func(c *pgx.Conn) {
		p.closing(c)
		if userBeforeClose != nil {
			userBeforeClose(c)
		}
	}
	pc.PingTimeout = p.cfg.PingTimeout
	pc.ShouldPing = p.shouldPing
}

// watchConnect wraps, for the connection cc is about to open, the hooks through which the pool
// follows it (the ones already set, if any, still run):
//   - ValidateConnect, which pgconn calls once a session is established, reports how long the
//     connection took to open, up to and including authentication, to the pool's connect-time
//     average (for the hedge delay and spikes), and that a connect worked (see connectFailed);
//   - DialFunc bounds, to PingTimeout, the cancel request pgx sends on a new connection to the
//     server when it closes cc's connection after a failure (pgconn's asyncClose): pgx gives it
//     15 s, and pgxpool keeps the broken connection's slot (in use, counted open) until it
//     ends, so a server that does not answer (paused, black-holed) held each slot that long;
//     the socket of the connection itself is closed at once (see closing). Dials made once
//     cc's session is established (validated: a host refused by target_session_attrs leaves
//     pgx trying the next) are the cancel requests; a server that does not answer one within
//     PingTimeout is not running the query anyway, or ends it when it reads the closed socket.
func (p *Pool) watchConnect(cc *pgx.ConnConfig) {
	start, dial, validate := time.Now(), cc.DialFunc, cc.ValidateConnect
	var established atomic.Bool
	cc.ValidateConnect = func(ctx context.Context, pc *pgconn.PgConn) error {
		p.connectTime.observe(time.Since(start))
		p.connectFailedAt.Store(0) // the server answered: an earlier failed connect was not an outage
		if validate != nil {
			if err := validate(ctx, pc); err != nil {
				return err // pgx tries the next host: its dial is a session's, not a cancel request
			}
		}
		established.Store(true)
		return nil
	}
	cc.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !established.Load() {
			return dial(ctx, network, addr)
		}
		end := time.Now().Add(p.cfg.PingTimeout)
		dctx, cancel := context.WithDeadline(ctx, end)
		defer cancel()
		c, err := dial(dctx, network, addr)
		if err == nil {
			c.SetDeadline(end) // the TLS handshake, the request and the server's answer
		}
		return c, err
	}
}

// release returns c to the pool. With OverflowIdleTimeout 0 it closes c instead when Size
// connections are already idle, as SQLAlchemy's QueuePool does with an overflow connection
// (the idle count is reserved atomically, so concurrent releases cannot overshoot);
// otherwise connections beyond Size are closed once idle OverflowIdleTimeout (see
// closeIdleOverflow).
func (p *Pool) release(c *pgxpool.Conn) { p.giveBack(c, true) }

// giveBack is release; held says whether a caller held c (how long counts in the hold time),
// or the pool itself (grow, New's warm-up).
func (p *Pool) giveBack(c *pgxpool.Conn, held bool) {
	pc := c.Conn()
	st := p.conns.get(pc)
	if st == nil || pc.IsClosed() || pc.PgConn().IsBusy() || pc.PgConn().TxStatus() != 'I' {
		c.Release() // pgxpool destroys it
		return
	}
	if st.opened <= p.conns.openedBefore.Load() {
		p.kill(pc, st, CloseStale) // opened before a confirmed failover
		c.Release()
		return
	}
	p.conns.releasing.Add(1)
	if p.cfg.OverflowIdleTimeout > 0 {
		p.conns.idle.Add(1)
	} else if !reserveIdle(&p.conns.idle, p.cfg.Size) {
		p.conns.releasing.Add(-1)
		p.closeOverflow(c, st)
		return
	}
	now := time.Now().UnixNano()
	if held {
		p.holdTime.observe(time.Duration(now - st.acquired.Load()))
	}
	st.lastUsed.Store(now)
	st.idle.Store(true)
	c.Release()
	p.conns.releasing.Add(-1)
	p.returnedOne()
}

// closeOverflow takes c, an overflow connection, out of the pool and closes it in the
// background.
func (p *Pool) closeOverflow(c *pgxpool.Conn, st *connState) {
	p.notIdle(st)
	p.conns.m.Delete(c.Conn())
	st.peek.close()
	p.stats.overflowClosed.Add(1)
	if p.obs != nil {
		p.obs.ConnClosed(context.Background(), CloseEvent{Reason: CloseOverflow})
	}
	raw := c.Hijack()
	p.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), xact.CleanupTimeout)
		defer cancel()
		raw.Close(ctx)
	})
}

// notIdle records that st left the idle set, and reports whether it was in it (then
// st.lastUsed is when the pool last released it).
func (p *Pool) notIdle(st *connState) bool {
	if st != nil && st.idle.CompareAndSwap(true, false) {
		p.conns.idle.Add(-1)
		return true
	}
	return false
}

// closing runs as pgxpool destroys a connection, for whatever reason.
func (p *Pool) closing(c *pgx.Conn) {
	st := p.conns.get(c)
	p.conns.m.Delete(c)
	p.notIdle(st)
	reason := CloseAged
	if st != nil {
		st.peek.close()
		if why := st.why.Load(); why != nil {
			reason = *why
		}
	}
	if c.IsClosed() {
		// The connection failed (pgx closed it on an error), or the pool condemned it. pgx's
		// asynchronous close may wait up to 15 s for the server to answer a Terminate, and
		// pgxpool keeps the pool slot until then: on a black-holed flow callers would queue
		// behind corpses. Closing the socket ends that at once.
		hardClose(c)
		if reason == CloseAged {
			reason = CloseBroken
		}
		if reason == CloseBroken {
			p.stats.broken.Add(1)
		}
		p.logs.warn(context.Background(), p.log, "pgsteady: connection destroyed", "reason", reason)
	}
	if reason == CloseAged && !p.closed.Load() {
		p.stats.aged.Add(1)
	}
	if p.obs != nil {
		p.obs.ConnClosed(context.Background(), CloseEvent{Reason: reason})
	}
	if p.returnWaiters.Load() > 0 {
		p.lost.Add(1)
		p.wakeReturnWaiter()
	}
}

// hardClose closes c's socket without a goodbye.
func hardClose(c *pgx.Conn) {
	nc := c.PgConn().Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	nc.Close()
}

// reserveIdle counts one more idle connection in idle unless size are already counted, and
// reports whether it did. Concurrent releases cannot overshoot: each reserves its place
// before it gives its connection back.
func reserveIdle(idle *atomic.Int64, size int) bool {
	if idle.Add(1) > int64(size) {
		idle.Add(-1)
		return false
	}
	return true
}
