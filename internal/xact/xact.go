// Package xact resolves a COMMIT whose answer was lost (PostgreSQL 13 and later): package pool
// learns a transaction's id with BEGIN ([Begin]) and, when COMMIT's outcome is uncertain
// ([Uncertain]), asks the server what became of it ([Resolve]).
package xact

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/retry"
)

// Resolving a COMMIT whose answer was lost (PostgreSQL 13 and later).
//
// A transaction learns its own id with pg_current_xact_id() (an xid8: the
// 32-bit xid with its epoch, which never wraps). When the connection is lost
// with COMMIT in flight, another connection asks pg_xact_status(id), which
// says "committed", "aborted" or "in progress", or NULL when the id is too
// old for the commit log still kept. For an id the server has not assigned
// yet, which happens after a failover to a standby that had not received it,
// pg_xact_status fails with SQLSTATE 22023 "transaction ID N is in the
// future". Both mean the outcome cannot be learned here.
//
// Package pool's Tx is the one user: tx.go (begin, commit, resolveCommit) says when it asks,
// how long the lookup may take and what the caller gets; it is not repeated here.
//
// Asking for the id assigns one to a transaction that has none yet, that is
// to one that has not written anything: a read-only transaction then uses up
// an xid (bringing the next anti-wraparound vacuum closer) and, at COMMIT,
// writes a commit record and waits for it to be flushed (synchronous_commit),
// which a transaction without an xid skips. Skip the query where the outcome
// cannot matter: TxOptions.AccessMode ReadOnly (nothing to lose), and on a
// standby, where PostgreSQL refuses to assign ids ("cannot assign
// TransactionIds during recovery"). pg_current_xact_id_if_assigned() avoids
// the assignment, but asked at BEGIN it is always NULL, and asked with COMMIT
// its answer is lost together with COMMIT's.

// currentSQL learns the id of the current transaction (as text, so that
// pgx needs no codec for xid8) and the server's crash stamp (see Ref).
const currentSQL = "SELECT pg_current_xact_id()::text, " + crashStampSQL

// statusSQL asks for the status of a transaction by its id, passed as
// text, and the server's crash stamp.
const statusSQL = "SELECT pg_xact_status($1::text::xid8), " + crashStampSQL

// crashStampSQL changes when the server recovers from a crash, and differs
// between two servers, but not across a clean restart: PostgreSQL discards
// its cumulative statistics after crash recovery and keeps them across a
// clean shutdown, and the reset time of the bgwriter's shared statistics
// records that. (pg_postmaster_start_time() does not change when the
// postmaster reinitialises after a backend crashed.) Any role may read it.
const crashStampSQL = "coalesce(pg_stat_get_bgwriter_stat_reset_time()::text, '')"

// Ref identifies a transaction for Resolve.
//
// The id alone is not enough. A server that crashes loses the WAL it had not
// yet written, and with it every trace of a transaction that had not
// committed; on restart it hands the lost transaction's id to a new
// transaction, and pg_xact_status then answers for that one. The same
// happens after a failover to a standby that had not received the
// transaction. Measured here: a backend killed with SIGKILL after one INSERT,
// and the next transaction after recovery got the same id (729), committed,
// and pg_xact_status(729) said "committed" for the lost INSERT. So the
// server's crash stamp is kept with the id, and when it has changed a status
// of committed or in progress is not believed. Aborted still is: if the
// transaction had committed durably, its id could not have been reused and
// would say committed. A clean restart keeps the stamp (its shutdown
// checkpoint records the next id, so nothing is reused), and its lost commits
// stay resolvable.
type Ref struct {
	xid   uint64 // pg_current_xact_id(); 0: not known
	stamp string // crashStampSQL's answer when the id was learned
}

// NewRef refers to transaction xid on a server whose crash stamp was stamp.
func NewRef(xid uint64, stamp string) Ref { return Ref{xid: xid, stamp: stamp} }

// Xid is the transaction's id (pg_current_xact_id()); 0 when it is not known.
func (r Ref) Xid() uint64 { return r.xid }

// Stamp is the server's crash stamp when the id was learned.
func (r Ref) Stamp() string { return r.stamp }

// Status is what the server knows of a transaction.
type Status int

const (
	// Unknown: the status cannot be learned: NULL (the id is older than
	// the commit log kept), an id in the future (after a failover), or the
	// lookup failed.
	Unknown Status = iota
	// Committed: the transaction committed.
	Committed
	// Aborted: it rolled back, or its backend died before it committed.
	Aborted
	// InProgress: its backend is still running it, for example still
	// committing, or unaware yet that its client is gone.
	InProgress
)

func (s Status) String() string {
	switch s {
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	case InProgress:
		return "in progress"
	default:
		return "unknown"
	}
}

// ParseStatus maps pg_xact_status's answer; NULL (nil) is unknown.
func ParseStatus(s *string) Status {
	if s == nil {
		return Unknown
	}
	switch *s {
	case "committed":
		return Committed
	case "aborted":
		return Aborted
	case "in progress":
		return InProgress
	}
	return Unknown
}

// BatchSender sends a batch on one connection: *pgx.Conn and *pgxpool.Conn.
type BatchSender interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Begin begins a transaction with opts on c and learns what
// identifies it in the same round trip: BEGIN and currentSQL go in one
// batch (pgx's Batch.BeginTx). On error the transaction, if it was begun, is
// rolled back, and the returned Tx is nil.
func Begin(ctx context.Context, c BatchSender, opts pgx.TxOptions) (pgx.Tx, Ref, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	b.Queue(currentSQL)
	br := c.SendBatch(ctx, b)
	tx := br.Tx()
	var text, stamp string
	_, err := br.Exec()
	if err == nil {
		err = br.QueryRow().Scan(&text, &stamp)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var xid uint64
	if err == nil {
		if xid, err = strconv.ParseUint(text, 10, 64); err != nil {
			err = errors.Join(errors.New("xact: pg_current_xact_id() answered "+strconv.Quote(text)), err)
		}
	}
	if err != nil {
		if tx != nil {
			rctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
			tx.Rollback(rctx)
			cancel()
		}
		return nil, Ref{}, err
	}
	return tx, Ref{xid: xid, stamp: stamp}, nil
}

// CleanupTimeout bounds the clean-up that follows a failure (a rollback), which runs even when
// the caller's context has ended: long enough for a server under load, short enough that a dead
// flow does not hold a caller.
const CleanupTimeout = 5 * time.Second

// RowQuerier runs one query: *pgxpool.Pool (a connection of its own for each
// call) and *pgx.Conn satisfy it.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Waits between two lookups: doubling from the first to the last.
const (
	pollFirst = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond
)

// ErrIDReused is Resolve's reason for unknown when the server crashed
// or failed over since the transaction began (see Ref).
var ErrIDReused = errors.New("xact: the server recovered from a crash or failed over since the transaction began; its id may belong to another transaction now")

// Resolve asks q for the status of transaction ref until it is
// committed or aborted, or known to be unknowable, or ctx ends; ctx alone
// bounds it, so give it a deadline. It polls while the transaction is in
// progress and while the lookup fails with an error that may pass (the
// lookup is a read, so [retry.Idempotent] errors are retried: a server that
// is restarting answers a little later).
//
// It returns the last status seen and, when that is not committed or
// aborted, why: nil for NULL (the id is too old), the *pgconn.PgError with
// SQLSTATE 22023 for an id in the future, ErrIDReused when the server
// crashed or failed over since the id was learned and the answer is not
// aborted, the lookup's last error, or ctx.Err() when ctx ended with the
// transaction still in progress. An id of 0 (never learned) is unknown at
// once. The query runs with the simple protocol, so it works through
// PgBouncer in transaction mode and other poolers that keep no prepared
// statements.
func Resolve(ctx context.Context, q RowQuerier, ref Ref) (Status, error) {
	if ref.xid == 0 {
		return Unknown, errors.New("xact: no transaction id to look up")
	}
	arg := strconv.FormatUint(ref.xid, 10)
	wait := pollFirst
	for {
		var s *string
		var stamp string
		err := q.QueryRow(ctx, statusSQL, pgx.QueryExecModeSimpleProtocol, arg).Scan(&s, &stamp)
		st := ParseStatus(s)
		if final, ferr, done := lookupSettled(ctx, ref, st, stamp, err); done {
			return final, ferr
		}
		if err == nil {
			err = ctx.Err() // in progress
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if st == InProgress {
				return st, ctx.Err()
			}
			return Unknown, errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, pollMax)
	}
}

// lookupSettled judges one answer of the status lookup: whether Resolve is done, and with
// what. It goes on polling while the transaction is in progress, and while the lookup failed
// with an error that may pass.
func lookupSettled(ctx context.Context, ref Ref, st Status, stamp string, err error) (Status, error, bool) {
	switch {
	case err == nil && stamp != ref.stamp && st != Aborted:
		return Unknown, ErrIDReused, true
	case err == nil && st != InProgress:
		return st, nil, true
	case err == nil:
		return st, nil, false
	case ctx.Err() != nil, futureID(err), !retry.Idempotent.Has(retry.Classify(err)):
		return Unknown, err, true
	}
	return st, nil, false
}

// Uncertain reports whether err, returned by Tx.Commit, leaves the outcome of the COMMIT
// unknown, so that it must be resolved (Resolve) before anything is retried or reported.
// The outcome is known when:
//
//	| err                                              | outcome                                  |
//	|--------------------------------------------------|------------------------------------------|
//	| nil                                              | committed                                |
//	| pgx.ErrTxClosed, pgx.ErrTxCommitRollback         | not committed (not sent; rolled back)    |
//	| pgconn.SafeToRetry, or another [retry.NotSent]   | not committed: COMMIT never ran          |
//	| a *pgconn.PgError of severity ERROR              | not committed: the server answered COMMIT |
//	|   (deferred constraint, 40001 at commit)         |   with an error and rolled back          |
//
// Anything else is uncertain: a lost connection ([retry.ConnLost], including a FATAL 57P01 that
// may follow a completed commit), and also the caller's context ending while COMMIT was in
// flight. [retry.Classify] says Permanent for the latter (the caller gave up), but pgx sent the
// COMMIT and closed the connection before its answer came: the transaction may have
// committed. Checking only Classify(err) == ConnLost misses that case.
func Uncertain(err error) bool {
	if err == nil || errors.Is(err, pgx.ErrTxClosed) || errors.Is(err, pgx.ErrTxCommitRollback) {
		return false
	}
	class := retry.Classify(err)
	if class == retry.NotSent || pgconn.SafeToRetry(err) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && class != retry.ConnLost {
		return false
	}
	return true
}

// futureID reports whether err is pg_xact_status's answer for an id the
// server has not assigned yet: SQLSTATE 22023 invalid_parameter_value,
// "transaction ID N is in the future" (xid8funcs.c, TransactionIdInRecentPast).
func futureID(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "22023"
}
