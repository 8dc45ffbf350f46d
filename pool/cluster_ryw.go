package pool

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/retry"
)

// rywKey marks a context whose reads must see the cluster's writes.
type rywKey struct{}

// WithReadYourWrites returns a context whose reads through a [Cluster]'s [Reader] see every
// write the cluster acknowledged before the read began (from any goroutine: the upload of one
// request is seen by the listing of the next): such a read goes to a replica only when that
// replica has been seen to replay the WAL past the last write's position, and to the primary
// otherwise. Reads with a context without it may see a replica up to the lag bound behind.
//
// How the cluster knows a write's position: after each write through it (Exec, Tx, Query,
// QueryRow, SendBatch, CopyFrom; not work done on [Cluster.Primary]) that may have applied,
// it reads pg_current_wal_insert_lsn() on the primary, one more round trip a write (none in a
// cluster of the primary alone), which is at or past the write's commit record. Should that lookup fail, reads with this context
// go to the primary until a later write's lookup or the next check of the primary (which reads
// the same position) succeeds. A replica's replay position is
// the one the last check measured (positions only grow), so a read right after a write goes to
// the primary and asks for a check sooner; reads after the next check can go to the replica.
func WithReadYourWrites(ctx context.Context) context.Context {
	return context.WithValue(ctx, rywKey{}, true)
}

// writeMark is what the cluster knows of its writes' WAL positions.
type writeMark struct {
	lsn     atomic.Int64 // the highest position read after a write
	lost    atomic.Int64 // writes whose position could not be read
	covered atomic.Int64 // lost as it stood before the last position that was read
}

// need returns the WAL position a replica must have replayed to serve a read with ctx, and
// whether only the primary can serve it (a write's position is unknown).
func (w *writeMark) need(ctx context.Context) (lsn int64, primaryOnly bool) {
	if ctx.Value(rywKey{}) == nil {
		return 0, false
	}
	if w.lost.Load() > w.covered.Load() {
		return 0, true
	}
	return w.lsn.Load(), false
}

// positionSQL reads the primary's WAL insert position as a number of bytes.
const positionSQL = `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`

// wrote records, after a write on m that ended with err, the primary's WAL position, unless
// err proves nothing was written, or the cluster has no replica that could need it.
func (c *Cluster) wrote(ctx context.Context, m *member, err error) {
	if len(c.members) < 2 || !mayHaveWritten(err) {
		return
	}
	// A position read after an earlier lookup failed is past that write too: it covers it.
	lost := c.writes.lost.Load()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.pool.cfg.PingTimeout)
	defer cancel()
	var lsn int64
	if err := m.pool.QueryRow(rctx, positionSQL, pgx.QueryExecModeSimpleProtocol).Scan(&lsn); err != nil {
		c.writes.lost.Add(1)
		c.stats.untracked.Add(1)
		c.log.WarnContext(ctx, "pgsteady: cluster: could not read the WAL position after a write: read-your-writes reads go to the primary", "err", err)
		return
	}
	c.stats.tracked.Add(1)
	raise(&c.writes.lsn, lsn)
	raise(&c.writes.covered, lost)
}

// mayHaveWritten reports whether a write that returned err may have applied: it succeeded,
// its commit's outcome is unknown, or its connection was lost while it was in flight.
func mayHaveWritten(err error) bool {
	var amb *AmbiguousCommitError
	return err == nil || errors.As(err, &amb) || retry.Classify(err) == retry.ConnLost
}
