package pool

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
)

// connState is what the pool knows of one open connection.
type connState struct {
	idle atomic.Bool // counted in connTable.idle
	peek peeker      // looks into the socket without reading from it
}

// connTable tracks the open connections, and how many of them are idle: pgxpool's hooks tell
// when a connection opens (AfterConnect), is handed out (ShouldPing runs on every acquire) and
// closes (BeforeClose); the pool's own release tells when it goes back. (pgxpool's AfterRelease
// hook would also tell, but it makes every release go through a new goroutine: a scheduling
// delay on every request.) A connection that a caller of Acquire releases itself is not counted
// idle, so the count errs low and the Size limit on idle connections errs lenient.
type connTable struct {
	m    sync.Map // *pgx.Conn -> *connState
	idle atomic.Int64

	// staleBefore (unix nanoseconds): a connection last used at or before this instant is
	// presumed dead without a ping, because a ping failed when this instant was set (the way
	// SQLAlchemy invalidates older connections after a disconnect; see shouldPing for the
	// instant chosen). Black-holed or killed connections cost a caller one ping timeout, not
	// one per connection.
	staleBefore atomic.Int64
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
	userAfterConnect, userBeforeClose := pc.AfterConnect, pc.BeforeClose
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		p.conns.m.Store(c, &connState{peek: newPeeker(c)})
		if userAfterConnect != nil {
			if err := userAfterConnect(ctx, c); err != nil {
				p.conns.m.Delete(c)
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

// release returns c to the pool, or closes it when Size connections are already idle, as
// SQLAlchemy's QueuePool does with an overflow connection. The idle count is reserved
// atomically, so concurrent releases cannot overshoot.
func (p *Pool) release(c *pgxpool.Conn) {
	pc := c.Conn()
	st := p.conns.get(pc)
	if st == nil || pc.IsClosed() || pc.PgConn().IsBusy() || pc.PgConn().TxStatus() != 'I' {
		c.Release() // pgxpool destroys it
		return
	}
	if p.conns.idle.Add(1) > int64(p.cfg.Size) {
		p.conns.idle.Add(-1)
		p.conns.m.Delete(pc)
		p.stats.overflowClosed.Add(1)
		raw := c.Hijack()
		p.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			raw.Close(ctx)
		})
		return
	}
	st.idle.Store(true)
	c.Release()
}

// notIdle records that st left the idle set.
func (p *Pool) notIdle(st *connState) {
	if st != nil && st.idle.CompareAndSwap(true, false) {
		p.conns.idle.Add(-1)
	}
}

// closing runs as pgxpool destroys a connection, for whatever reason.
func (p *Pool) closing(c *pgx.Conn) {
	st := p.conns.get(c)
	p.conns.m.Delete(c)
	p.notIdle(st)
	p.stats.closed.Add(1)
	if c.IsClosed() {
		// The connection failed (pgx closed it on an error). pgx's asynchronous close may wait
		// up to 15 s for the server to answer a Terminate, and pgxpool keeps the pool slot until
		// then: on a black-holed flow callers would queue behind corpses. Closing the socket
		// ends that at once.
		hardClose(c)
		p.stats.broken.Add(1)
		p.log.Warn("pgsteady: connection destroyed", "reason", "broken")
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

// peekAfter is the idle time below which not even the peek is done: a connection handed back
// and out again within a millisecond (a busy pool) is spared the system call.
const peekAfter = time.Millisecond

// shouldPing runs on every acquire, before pgxpool hands the connection out. It decides and does
// the pre-ping itself, so that the pool learns of failures; when it returns true pgxpool pings
// a connection that is already closed, which fails at once and makes pgxpool destroy it and
// try another.
func (p *Pool) shouldPing(ctx context.Context, params pgxpool.ShouldPingParams) bool {
	c := params.Conn
	st := p.conns.get(c)
	p.notIdle(st)
	lastUsed := time.Now().Add(-params.IdleDuration).UnixNano()
	if lastUsed <= p.conns.staleBefore.Load() {
		p.kill(c, "older than a connection that failed its ping")
		return true
	}
	switch {
	case p.cfg.PrePing == config.PrePingAlways,
		p.cfg.PrePing == config.PrePingIdle && params.IdleDuration > p.cfg.PrePingAfter:
	default:
		// No ping due. A free check remains: a server that closed the connection (an
		// administrator's kill, an idle-session timeout, a restart) has already sent its FATAL
		// and FIN, which sit in the socket. Peeking finds them without a round trip.
		if params.IdleDuration < peekAfter || st == nil || !st.peek.suspicious() {
			return false
		}
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
	err := c.Ping(pctx)
	cancel()
	if err == nil {
		return false
	}
	p.stats.failedPings.Add(1)
	// Condemn the connections idle at least as long as this one, and with PrePingIdle every
	// connection that would need a ping now: whatever killed this one (a NAT's idle cut, a
	// restart, a mass kill) has most likely killed them too, and a fresh connection costs less
	// than one more ping timeout.
	cut := lastUsed
	if p.cfg.PrePing == config.PrePingIdle {
		cut = max(cut, time.Now().Add(-p.cfg.PrePingAfter).UnixNano())
	}
	for {
		old := p.conns.staleBefore.Load()
		if cut <= old || p.conns.staleBefore.CompareAndSwap(old, cut) {
			break
		}
	}
	p.lastConnErr.set(fmt.Errorf("pre-ping of a connection idle %v failed: %w", params.IdleDuration.Round(time.Millisecond), err))
	p.log.Info("pgsteady: pre-ping failed", "idle", params.IdleDuration, "err", err)
	p.kill(c, "failed its ping")
	return true
}

// kill closes c at once so that pgxpool's ping fails and it destroys the connection.
func (p *Pool) kill(c *pgx.Conn, why string) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Close(ctx) // marks pgx's connection closed and closes the socket, without waiting
	p.log.Debug("pgsteady: closing connection", "reason", why)
}
