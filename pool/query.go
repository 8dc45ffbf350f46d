package pool

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/retry"
)

// Querier runs statements on a [Pool] with a chosen set of retryable error classes. The zero
// value is not usable; get one from [Pool.Idempotent]. Like *Pool it satisfies sqlc's DBTX.
type Querier struct {
	p  *Pool
	on retry.Classes
}

// Idempotent returns a Querier whose Exec, Query, QueryRow and SendBatch also retry after the
// connection was lost while a statement was in flight ([retry.ConnLost]): the statement may
// have run, and it runs again.
//
// Use it for reads, and for writes that are harmless to repeat (an upsert to a fixed value, an
// insert guarded by a unique key with ON CONFLICT DO NOTHING). Never for a write that must
// happen once: run those in [Pool.Tx], which retries a transaction only when it cannot have
// committed. With sqlc: queries := db.New(p.Idempotent()).
func (p *Pool) Idempotent() Querier { return Querier{p: p, on: retry.Idempotent} }

// Exec runs sql with args on a pooled connection, retrying [retry.NotSent] errors.
func (p *Pool) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return p.exec(ctx, retry.Safe, sql, args)
}

// Query runs sql with args and returns its rows, retrying [retry.NotSent] errors. Retrying is
// possible until a row has been handed over: Query reads the first row before it returns, so
// an error before the first row (including one the server sends while it starts executing) is
// retried, and one after it is reported by Rows.Err. The rows hold a connection until closed
// or read to the end.
func (p *Pool) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return p.query(ctx, retry.Safe, sql, args)
}

// QueryRow runs sql with args when Scan is called, and scans its first row, retrying
// [retry.NotSent] errors. Scan returns [pgx.ErrNoRows] when there is no row.
func (p *Pool) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &row{cl: call{p: p, ctx: ctx, on: retry.Safe, sql: sql}, args: args}
}

// SendBatch sends b on a pooled connection, retrying [retry.NotSent] errors until the first
// result has been read: a batch whose first result fails with a retryable error is sent again
// on another connection. Errors after that are the caller's. Close the results to release the
// connection.
func (p *Pool) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return p.sendBatch(ctx, retry.Safe, b)
}

// CopyFrom copies rows from src into table on a pooled connection. Only acquiring the
// connection is retried: src cannot be read twice.
func (p *Pool) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer p.release(c)
	return c.CopyFrom(ctx, table, columns, src)
}

// Do runs fn, and runs it again under the pool's retry policy when it fails with an error of a
// class the Querier retries. It is for a read that streams rows: Query retries only until the
// first row is handed over, so a connection lost in the middle of a result reaches the caller
// through Rows.Err; inside Do, the whole read starts over. fn must start from scratch each time
// (reset what it collected). Retries inside fn that gave up end Do too: they do not multiply.
func (q Querier) Do(ctx context.Context, fn func(context.Context) error) error {
	cl, err := q.p.call(ctx, q.on, "")
	if err != nil {
		return err
	}
	return cl.run(func() error { return fn(ctx) })
}

// Exec is [Pool.Exec] with the Querier's retries.
func (q Querier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return q.p.exec(ctx, q.on, sql, args)
}

// Query is [Pool.Query] with the Querier's retries.
func (q Querier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return q.p.query(ctx, q.on, sql, args)
}

// QueryRow is [Pool.QueryRow] with the Querier's retries.
func (q Querier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &row{cl: call{p: q.p, ctx: ctx, on: q.on, sql: sql}, args: args}
}

// CopyFrom is [Pool.CopyFrom]: only acquiring the connection is retried, since src cannot be
// read twice. It is here so that a Querier satisfies sqlc's DBTX for :copyfrom queries too.
func (q Querier) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	return q.p.CopyFrom(ctx, table, columns, src)
}

// SendBatch is [Pool.SendBatch] with the Querier's retries.
func (q Querier) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return q.p.sendBatch(ctx, q.on, b)
}

func (p *Pool) exec(ctx context.Context, on retry.Classes, sql string, args []any) (tag pgconn.CommandTag, err error) {
	cl, err := p.call(ctx, on, sql)
	if err != nil {
		return tag, err
	}
	err = cl.run(func() error {
		c, err := cl.acquire()
		if err != nil {
			return err
		}
		tag, err = c.Exec(ctx, sql, args...)
		return cl.settle(c, err)
	})
	return tag, err
}

// row is QueryRow's pgx.Row: the query runs, with retries, inside Scan, which begins the call.
type row struct {
	cl   call
	args []any
}

func (r *row) Scan(dest ...any) error {
	cl := &r.cl
	if err := cl.begin(); err != nil {
		return err
	}
	return cl.run(func() error {
		c, err := cl.acquire()
		if err != nil {
			return err
		}
		return cl.settle(c, c.QueryRow(cl.ctx, cl.sql, r.args...).Scan(dest...))
	})
}

func (p *Pool) query(ctx context.Context, on retry.Classes, sql string, args []any) (pgx.Rows, error) {
	cl, err := p.call(ctx, on, sql)
	if err != nil {
		return nil, err
	}
	var out *rows
	err = cl.run(func() error {
		c, err := cl.acquire()
		if err != nil {
			return err
		}
		rs, err := c.Query(ctx, sql, args...)
		if err != nil {
			return cl.settle(c, err)
		}
		out = &rows{Rows: rs, primed: rs.Next()}
		if !out.primed {
			return cl.settle(c, rs.Err()) // no row: the rows are done
		}
		out.heldConn = heldConn{p: p, conn: c}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rows wraps pgx.Rows whose first row was read ahead by Query, and releases the connection
// when the rows end.
type rows struct {
	pgx.Rows
	heldConn      // none for the rows of a batch
	primed   bool // Next already moved to the first row
}

func (r *rows) Next() bool {
	if r.primed {
		r.primed = false
		return true
	}
	if r.Rows.Next() {
		return true
	}
	r.release()
	return false
}

func (r *rows) Close() {
	r.primed = false
	r.Rows.Close()
	r.release()
}

func (p *Pool) sendBatch(ctx context.Context, on retry.Classes, b *pgx.Batch) pgx.BatchResults {
	cl, err := p.call(ctx, on, "")
	if err != nil {
		return errBatch{err}
	}
	c, err := cl.acquireRetrying()
	if err != nil {
		return errBatch{err}
	}
	return &batch{cl: cl, b: b, heldConn: heldConn{p: p, conn: c}, br: c.SendBatch(ctx, b)}
}

// batch is SendBatch's results: until the first result is read, a retryable failure sends the
// whole batch again on another connection, within the SendBatch call's budget.
type batch struct {
	cl       call
	b        *pgx.Batch
	heldConn // none once released, or when a resend found no connection
	br       pgx.BatchResults
	read     bool // a result has been handed to the caller
}

// first runs the first read with retries (of the classes in on); later reads go straight
// through. A batch that begins a transaction (pgx.Batch.BeginTx) is never sent twice: its Tx
// belongs to the first connection.
func (bt *batch) first(on retry.Classes, read func(pgx.BatchResults) error) error {
	if bt.read || bt.br.Tx() != nil {
		bt.read = true
		return read(bt.br)
	}
	bt.read = true
	err := bt.judged(read(bt.br))
	if err == nil {
		return nil
	}
	for _, q := range bt.b.QueuedQueries {
		on = wholeCall(on, q.SQL)
	}
	return bt.cl.retry(on, err, func() error {
		bt.resend()
		return bt.judged(read(bt.br))
	})
}

// judged has the pool judge a 25006 that the batch's first result got (see failover.go), once
// the batch's connection is idle again.
func (bt *batch) judged(err error) error {
	if !isReadOnly(err) || bt.conn == nil {
		return err
	}
	bt.br.Close()
	return bt.cl.p.judge(bt.cl.ctx, bt.conn, err, false)
}

// resend gives the batch's connection back and sends the batch again on another one; when
// none can be had, the results become that error.
func (bt *batch) resend() {
	bt.br.Close()
	bt.release()
	c, err := bt.cl.acquire()
	if err != nil {
		bt.br = errBatch{err}
		return
	}
	bt.conn, bt.br = c, c.SendBatch(bt.cl.ctx, fresh(bt.b))
}

func (bt *batch) Exec() (tag pgconn.CommandTag, err error) {
	err = bt.first(bt.cl.on, func(br pgx.BatchResults) error {
		tag, err = br.Exec()
		return err
	})
	return tag, err
}

func (bt *batch) Query() (pgx.Rows, error) {
	var rs pgx.Rows
	err := bt.first(bt.cl.on, func(br pgx.BatchResults) error {
		var err error
		rs, err = br.Query()
		if err != nil {
			return err
		}
		// Like Query: the first row (or the error that replaces it) is read before handing over.
		if rs.Next() {
			rs = &rows{Rows: rs, primed: true}
			return nil
		}
		return rs.Err()
	})
	return rs, err
}

// fresh copies b's queries without what pgx cached in them while sending b on another
// connection (prepared statement descriptions, which the next connection does not have).
func fresh(b *pgx.Batch) *pgx.Batch {
	nb := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, len(b.QueuedQueries))}
	for i, q := range b.QueuedQueries {
		nb.QueuedQueries[i] = &pgx.QueuedQuery{SQL: q.SQL, Arguments: q.Arguments, Fn: q.Fn}
	}
	return nb
}

// Tx is the transaction begun by the batch, if any.
func (bt *batch) Tx() pgx.Tx { return bt.br.Tx() }

func (bt *batch) QueryRow() pgx.Row {
	return batchRow{bt}
}

type batchRow struct{ bt *batch }

func (r batchRow) Scan(dest ...any) error {
	return r.bt.first(r.bt.cl.on, func(br pgx.BatchResults) error { return br.QueryRow().Scan(dest...) })
}

// Close reads what is left and releases the connection. When nothing was read before, a batch
// that was never sent is sent again (NotSent only, not Conflict: Close runs the QueuedQuery
// callbacks, and a later query's conflict would resend a batch whose earlier callbacks ran).
func (bt *batch) Close() error {
	err := bt.first(bt.cl.on&retry.Set(retry.NotSent), func(br pgx.BatchResults) error { return br.Close() })
	bt.release()
	return err
}

// errBatch is the BatchResults of a batch that could not be sent.
type errBatch struct{ err error }

func (e errBatch) Exec() (pgconn.CommandTag, error) { return pgconn.CommandTag{}, e.err }
func (e errBatch) Query() (pgx.Rows, error)         { return nil, e.err }
func (e errBatch) QueryRow() pgx.Row                { return errRow{e.err} }
func (e errBatch) Close() error                     { return e.err }
func (e errBatch) Tx() pgx.Tx                       { return nil }

type errRow struct{ err error }

func (e errRow) Scan(...any) error { return e.err }
