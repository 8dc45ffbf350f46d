package pool

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// readBatch is Reader.SendBatch's results: until the first result has been read, a replica's
// failure sends the batch again to the next member (Cluster.read's moves, one result at a
// time).
type readBatch struct {
	c     *Cluster
	ctx   context.Context
	b     *pgx.Batch
	a     *readAttempt // the member it was sent to
	br    pgx.BatchResults
	tried uint64
	read  bool // the first result has been read
}

// send sends b to the member chosen among those not tried yet.
func (rb *readBatch) send(b *pgx.Batch) {
	rb.a = rb.c.attempt(rb.ctx, rb.tried)
	rb.a.kept = true // the read lasts until Close
	rb.br = rb.a.q.SendBatch(rb.a.ctx, b)
}

// first reads the next result with read; the first one moves to the next member while the
// replica it was sent to fails.
func (rb *readBatch) first(read func(pgx.BatchResults) error) error {
	if rb.read {
		return read(rb.br)
	}
	rb.read = true
	for {
		err := read(rb.br)
		if err == nil {
			rb.a.done(nil) // counts the read; Close ends it
			return nil
		}
		rb.br.Close()
		if rb.br.Tx() != nil {
			rb.a.end() // its transaction belongs to this member: not sent again
			return err
		}
		again, err := rb.a.done(err)
		if !again {
			return err
		}
		rb.tried |= 1 << rb.a.m.idx
		rb.send(fresh(rb.b))
	}
}

func (rb *readBatch) Exec() (tag pgconn.CommandTag, err error) {
	err = rb.first(func(br pgx.BatchResults) error {
		tag, err = br.Exec()
		return err
	})
	return tag, err
}

func (rb *readBatch) Query() (rs pgx.Rows, err error) {
	err = rb.first(func(br pgx.BatchResults) error {
		rs, err = br.Query()
		return err
	})
	return rs, err
}

func (rb *readBatch) QueryRow() pgx.Row { return readBatchRow{rb} }

type readBatchRow struct{ rb *readBatch }

func (r readBatchRow) Scan(dest ...any) error {
	return r.rb.first(func(br pgx.BatchResults) error { return br.QueryRow().Scan(dest...) })
}

// Tx is the transaction begun by the batch, if any.
func (rb *readBatch) Tx() pgx.Tx { return rb.br.Tx() }

// Close reads what is left, ends the read and releases the connection.
func (rb *readBatch) Close() error {
	err := rb.first(func(br pgx.BatchResults) error { return br.Close() })
	rb.br.Close()
	rb.a.end()
	return err
}
