package pool

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/retry"
)

// noRetry is the Classes of a Querier whose calls make one attempt: a read the cluster sends
// to a replica, which moves to another member instead of retrying there.
const noRetry = retry.Classes(1 << 7)

// Reader runs idempotent reads on a [Cluster]'s replicas. The zero value is not usable; get
// one from [Cluster.Replica]. It satisfies sqlc's DBTX, for queries that only read.
//
// Each call goes to the replica with the fewest calls in flight among those that qualify
// (healthy, within the lag bound, and, with [WithReadYourWrites], past the last write), so a
// replica that answers slowly gets fewer reads; with none, to the primary. On a replica a call
// makes one attempt: when it fails with a connection error, a recovery conflict or an
// exhausted pool (Query and SendBatch: before their first row or result reached the caller),
// it moves at once to the next qualifying replica and at last to the primary, where the
// primary pool's retries ([Pool.Idempotent]) apply. A statement error (a
// syntax error, a write refused by a replica) is returned as it is.
type Reader struct{ c *Cluster }

// Replica returns the cluster's [Reader]. Reads through it must be safe to run twice, as for
// [Pool.Idempotent].
func (c *Cluster) Replica() Reader { return Reader{c: c} }

// Do runs fn with a [Querier] of the member chosen for the read, and runs it again on another
// member (see [Reader]) when it fails there; on the primary, as [Querier.Do] of
// [Pool.Idempotent] does. It is for a read that streams rows or runs several statements that
// must meet the same server. fn must start from scratch each time.
func (r Reader) Do(ctx context.Context, fn func(context.Context, Querier) error) error {
	return r.c.read(ctx, func(ctx context.Context, q Querier, a *readAttempt) error {
		if a.onPrimary {
			return q.Do(ctx, func(ctx context.Context) error { return fn(ctx, q) })
		}
		return fn(ctx, q)
	})
}

// QueryRow runs sql with args on a replica when Scan is called, as [Reader] says.
func (r Reader) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return readRow{c: r.c, ctx: ctx, sql: sql, args: args}
}

// Query runs sql with args on a replica, as [Reader] says, until the first row has been read
// (as [Pool.Query]); an error after it comes through Rows.Err. Use [Reader.Do] for a read that
// must start over then.
func (r Reader) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	var out pgx.Rows
	err := r.c.read(ctx, func(ctx context.Context, q Querier, a *readAttempt) error {
		rs, err := q.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		out = &heldRows{Rows: rs, done: a.keep()} // the read lasts until the rows are closed
		return nil
	})
	return out, err
}

// Exec runs sql with args on a replica, as [Reader] says: for a statement that reads (SELECT
// without a result wanted, a function call). A write fails on a replica with SQLSTATE 25006.
func (r Reader) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := r.c.read(ctx, func(ctx context.Context, q Querier, _ *readAttempt) (err error) {
		tag, err = q.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// SendBatch sends b to the member chosen for a read. Until the first result has been read
// (Exec, Query, QueryRow or Close), a replica's failure sends the batch again to the next
// member, as [Reader] says; after that its errors come with its results. A batch that begins a
// transaction (pgx.Batch.BeginTx) is sent once. Close the results to end the read.
func (r Reader) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if r.c.closed.Load() {
		return errBatch{ErrClosed}
	}
	rb := &readBatch{c: r.c, ctx: ctx, b: b}
	rb.send(b)
	return rb
}

// CopyFrom is [Cluster.CopyFrom]: a copy is a write, so it goes to the primary. It is here so
// that a Reader satisfies sqlc's DBTX.
func (r Reader) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return r.c.CopyFrom(ctx, table, columns, src)
}

// readRow is Reader.QueryRow's row.
type readRow struct {
	c    *Cluster
	ctx  context.Context
	sql  string
	args []any
}

func (r readRow) Scan(dest ...any) error {
	return r.c.read(r.ctx, func(ctx context.Context, q Querier, _ *readAttempt) error {
		return q.QueryRow(ctx, r.sql, r.args...).Scan(dest...)
	})
}

// readAttempt is one attempt of a read on one member.
type readAttempt struct {
	c         *Cluster
	m         *member
	onPrimary bool
	parent    context.Context // the caller's
	ctx       context.Context // the attempt's: on a replica, canceled when a check finds it gone
	q         Querier
	stop      func() bool             // on a replica: unregisters the cancellation by a failed check
	cancel    context.CancelCauseFunc // on a replica: releases the attempt's context
	kept      bool                    // the caller ends the attempt (keep)
	ended     bool
}

// end ends the attempt: it counts it out of the member's load and releases its context.
func (a *readAttempt) end() {
	if a.ended {
		return
	}
	a.ended = true
	if a.stop != nil {
		a.stop()
		a.cancel(nil)
	}
	a.m.inflight.Add(-1)
}

// keep hands the end of the attempt to the caller (a read whose rows outlive the call): it
// must call the returned function once the read is over.
func (a *readAttempt) keep() func() {
	a.kept = true
	return a.end
}

// read runs fn on the member chosen for a read, moving to the next one when a replica fails
// (see Reader). The primary's answer is final.
func (c *Cluster) read(ctx context.Context, fn func(context.Context, Querier, *readAttempt) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	var tried uint64
	for {
		a := c.attempt(ctx, tried)
		again, err := a.done(fn(a.ctx, a.q, a))
		if !again {
			return err
		}
		tried |= 1 << a.m.idx
	}
}

// attempt starts a read's attempt on the member chosen for it among those not in tried. On a
// replica the attempt's context is also canceled when a check finds the replica gone: a read on
// a server that hung (a paused VM, a black-holed flow) moves on after a check's timeout rather
// than wait for the dead-flow bound.
func (c *Cluster) attempt(ctx context.Context, tried uint64) *readAttempt {
	m, onPrimary := c.route(ctx, tried)
	m.inflight.Add(1)
	a := &readAttempt{c: c, m: m, onPrimary: onPrimary, parent: ctx, ctx: ctx, q: querier(m, onPrimary)}
	if !onPrimary {
		a.ctx, a.cancel = context.WithCancelCause(ctx)
		a.stop = context.AfterFunc(*m.down.Load(), func() { a.cancel(errReplicaGone) })
	}
	return a
}

// done ends the attempt (unless it succeeded and was kept) after it returned err, and says
// whether the read should move to another member: it failed on a replica for a fault of the
// replica's, which then takes no reads until a check finds it back (not for a recovery
// conflict). The error returned is err, marked when a check found the replica gone.
func (a *readAttempt) done(err error) (again bool, _ error) {
	m, ctx := a.m, a.parent
	if err != nil && !a.onPrimary && ctx.Err() == nil && errors.Is(context.Cause(a.ctx), errReplicaGone) {
		err = fmt.Errorf("%w: %w", errReplicaGone, err)
	}
	if !a.kept || err != nil {
		a.end()
	}
	if err == nil {
		m.reads.Add(1)
		return false, nil
	}
	if a.onPrimary || !replicaFault(ctx, err) {
		return false, err
	}
	m.readFails.Add(1)
	a.c.stats.fallbacks.Add(1)
	if retry.Classify(err) != retry.Conflict {
		m.ok.Store(false) // no reads until a check finds it back
	}
	a.c.log.InfoContext(ctx, "pgsteady: cluster: a read failed on a replica: trying another member", "replica", m.addr, "err", err)
	return true, err
}

// errReplicaGone is the cause with which a read's context on a replica is canceled when a check
// finds the replica gone.
var errReplicaGone = errors.New("pool: the replica stopped answering its checks")

// route chooses the member for a read with ctx that has not tried the members in tried, and
// says whether it is the primary.
func (c *Cluster) route(ctx context.Context, tried uint64) (*member, bool) {
	need, primaryOnly := c.writes.need(ctx)
	prim := c.primary.Load()
	if primaryOnly {
		c.stats.primaryForWrites.Add(1)
		return prim, true
	}
	if m := c.pick(prim, need, tried); m != nil {
		return m, false
	}
	if need > 0 && c.pick(prim, 0, tried) != nil {
		// A replica would do but for the last write: look again soon.
		c.stats.primaryForWrites.Add(1)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	} else {
		c.stats.primaryNoReplica.Add(1)
	}
	return prim, true
}

// pick returns the qualifying replica with the fewest reads in flight (ties: the first from a
// rotating start), or nil. prim is the primary, need the position a replica must have replayed.
func (c *Cluster) pick(prim *member, need int64, tried uint64) *member {
	n := len(c.members)
	start := int(c.rr.Add(1) % uint64(n))
	var best *member
	var bestLoad int64
	for i := range n {
		m := c.members[(start+i)%n]
		if m == prim || tried&(1<<m.idx) != 0 || !c.readable(m, need) {
			continue
		}
		if load := m.inflight.Load(); best == nil || load < bestLoad {
			best, bestLoad = m, load
		}
	}
	return best
}

// querier is the Querier of a read on m: the primary's retries, one attempt on a replica.
func querier(m *member, onPrimary bool) Querier {
	if onPrimary {
		return m.pool.Idempotent()
	}
	return Querier{p: m.pool, on: noRetry}
}

// replicaFault reports whether a read that failed with err on a replica should move to another
// member: the replica could not be reached or lost the connection, its pool could not give a
// connection in time, or it canceled the read for a conflict with recovery (40001). Not when
// the caller's context ended, nor for the statement's own errors.
func replicaFault(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var te *TimeoutError
	if errors.As(err, &te) || errors.Is(err, ErrClosed) || errors.Is(err, errReplicaGone) {
		return true
	}
	return retry.Classify(err) != retry.Permanent
}
