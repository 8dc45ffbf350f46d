package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// member is one server of a Cluster and what the checks and reads learned of it.
type member struct {
	idx  int
	addr string // host:port, for stats and logs
	pool *Pool

	checked  atomic.Bool  // a check has answered at least once
	ok       atomic.Bool  // the last check answered, and no read failed on it since
	recovery atomic.Bool  // pg_is_in_recovery() at the last check: a standby
	readOnly atomic.Bool  // default_transaction_read_only on at the last check
	fails    atomic.Int32 // checks failed in a row
	lsn      atomic.Int64 // replayed (standby) or written (primary) WAL position; -1 unknown
	lag      atomic.Int64 // bytes behind the primary; -1 unknown
	lagTime  atomic.Int64 // nanoseconds since the last transaction replayed, 0 when caught up

	down       atomic.Pointer[context.Context] // canceled when a check finds the member gone, then replaced
	endDown    context.CancelFunc              // cancels *down; used by check only
	inflight   atomic.Int64
	reads      atomic.Int64
	readFails  atomic.Int64 // reads that failed here and moved to another member
	checkFails atomic.Int64
	checkBusy  atomic.Int64 // checks skipped because every connection of its pool was busy
	checkTime  atomic.Int64 // nanoseconds spent in checks, all told
}

// newDown replaces the signal that m is gone with a fresh one.
func (m *member) newDown() {
	ctx, cancel := context.WithCancel(context.Background())
	m.down.Store(&ctx)
	m.endDown = cancel
}

// readable reports whether m may serve a read that needs position need (0: none): a replica
// that answered its last check within the cluster's lag bounds.
func (c *Cluster) readable(m *member, need int64) bool {
	if !m.ok.Load() || !m.recovery.Load() {
		return false
	}
	lag := m.lag.Load()
	return lag >= 0 && lag <= c.maxLag && m.lsn.Load() >= need &&
		(c.maxDelay == 0 || time.Duration(m.lagTime.Load()) <= c.maxDelay)
}

// checkSQL asks a member where it is: in recovery or not, its WAL position (replayed on a
// standby; on a primary the insert position, at or past every commit it acknowledged) in bytes, the age of the last transaction it replayed, and
// whether its sessions are read-only by default. One round trip, simple protocol.
const checkSQL = `SELECT pg_is_in_recovery(),
	coalesce((CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END) - '0/0'::pg_lsn, -1)::bigint,
	coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,
	current_setting('default_transaction_read_only') = 'on'`

// watch checks the members every c.every, and sooner (at most every c.minGap) when a read
// asks, until the cluster closes.
func (c *Cluster) watch() {
	t := time.NewTicker(c.every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.kick:
			if wait := c.minGap - time.Since(last); wait > 0 {
				w := time.NewTimer(wait)
				select {
				case <-c.stop:
					w.Stop()
					return
				case <-w.C:
				}
			}
			c.stats.askedChecks.Add(1)
		}
		last = time.Now()
		c.checkAll(c.life)
	}
}

// checkAll checks every member at once, then works out lags and the primary.
func (c *Cluster) checkAll(ctx context.Context) {
	lost := c.writes.lost.Load() // writes the primary's position, read below, is past
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Go(func() { c.check(ctx, m) })
	}
	wg.Wait()
	c.stats.checks.Add(1)
	c.settle(ctx)
	c.coverLostWrites(lost)
}

// coverLostWrites makes the primary's position, just checked, stand for the writes whose own
// position could not be read before the round began (lost of them): it is past every commit
// the primary had acknowledged, so read-your-writes reads need not go to the primary forever
// when no later write comes to cover them.
func (c *Cluster) coverLostWrites(lost int64) {
	prim := c.primary.Load()
	if lost <= c.writes.covered.Load() || !prim.ok.Load() || prim.recovery.Load() {
		return
	}
	raise(&c.writes.lsn, prim.lsn.Load())
	raise(&c.writes.covered, lost)
}

// check asks m where it is, one attempt bounded by its pool's PingTimeout.
func (c *Cluster) check(ctx context.Context, m *member) {
	cctx, cancel := context.WithTimeout(ctx, m.pool.cfg.PingTimeout)
	defer cancel()
	var (
		recovery, readOnly bool
		lsn                int64
		age                float64
	)
	q := Querier{p: m.pool, on: noRetry}
	start := time.Now()
	err := q.QueryRow(cctx, checkSQL, pgx.QueryExecModeSimpleProtocol).Scan(&recovery, &lsn, &age, &readOnly)
	m.checkTime.Add(int64(time.Since(start)))
	var te *TimeoutError
	if errors.As(err, &te) && te.Max > 0 && te.InUse >= te.Max && ctx.Err() == nil {
		// Every connection is busy with the application's work: the member is up, and the
		// check waits for the next round rather than take it out of the reads.
		m.checkBusy.Add(1)
		return
	}
	if err != nil && ctx.Err() != nil {
		return // the cluster is closing (or NewCluster's ctx ended): the member is not to blame
	}
	if err != nil {
		// Reads still running on it (a hung server never answers them) move on.
		end := m.endDown
		m.newDown()
		end()
		m.ok.Store(false)
		m.fails.Add(1)
		m.checkFails.Add(1)
		c.log.InfoContext(ctx, "pgsteady: cluster: a member did not answer its check", "member", m.addr, "err", err)
		return
	}
	m.recovery.Store(recovery)
	m.readOnly.Store(readOnly)
	m.lsn.Store(lsn)
	m.lagTime.Store(int64(age * float64(time.Second)))
	m.fails.Store(0)
	m.checked.Store(true)
	m.ok.Store(true)
}

// downChecks is how many checks in a row a primary must fail before a replica found promoted
// replaces it.
const downChecks = 2

// settle works out, after a round of checks, which member is the primary (see promote) and
// each replica's lag. The lag is measured from the primary's position, or, with the primary
// unreachable, from the furthest position any member reached.
func (c *Cluster) settle(ctx context.Context) {
	prim := c.promote(ctx)
	head := int64(-1)
	if prim.ok.Load() && !prim.recovery.Load() {
		head = prim.lsn.Load()
	} else {
		for _, m := range c.members {
			if m.ok.Load() {
				head = max(head, m.lsn.Load())
			}
		}
	}
	for _, m := range c.members {
		switch {
		case m == prim || !m.ok.Load() || !m.recovery.Load():
			m.lag.Store(-1)
		case head < 0:
			// No position to measure from: keep the last lag.
		default:
			lag := max(0, head-m.lsn.Load())
			m.lag.Store(lag)
			if lag == 0 {
				m.lagTime.Store(0) // caught up: the last replayed transaction's age says nothing
			}
		}
	}
}

// promote returns the primary after a round of checks: a member out of recovery replaces a
// primary that is no longer one (unreachable downChecks times in a row, in recovery, or
// read-only for every session).
func (c *Cluster) promote(ctx context.Context) *member {
	prim := c.primary.Load()
	if prim.fails.Load() < downChecks && (!c.discover || prim.ok.Load()) && (!prim.ok.Load() || !prim.recovery.Load() && !prim.readOnly.Load()) {
		return prim
	}
	for _, m := range c.members {
		if m == prim || !m.ok.Load() || m.recovery.Load() || m.readOnly.Load() {
			continue
		}
		c.primary.Store(m)
		end := c.endMoved
		c.newMoved()
		end() // writes still on the former primary go to m
		if c.discover {
			c.log.InfoContext(ctx, "pgsteady: cluster: found the primary", "primary", m.addr)
		} else {
			c.stats.promotions.Add(1)
			c.log.WarnContext(ctx, "pgsteady: cluster: a replica was promoted: it is the primary now", "primary", m.addr, "former", prim.addr)
		}
		return m
	}
	return prim
}
