// Package pool is pgsteady's resilient PostgreSQL pool: a [pgxpool.Pool] configured by package
// config, that hides the faults of cloud databases from its callers where that is safe.
//
//	cfg, err := config.Parse(os.Getenv("DATABASE_URL")) // or config.FromEnv()
//	if err != nil {
//		return err // a *config.Error naming the key, the value and the limit; never the password
//	}
//	p, err := pool.New(ctx, cfg) // connects before it returns, retrying while the server starts
//	if err != nil {
//		return err
//	}
//	defer p.Close()
//	var n int
//	err = p.Idempotent().QueryRow(ctx, "SELECT count(*) FROM permis").Scan(&n) // a read, retried
//	err = p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error { // a write, applied at most once
//		_, err := tx.Exec(ctx, "INSERT INTO permis (numero) VALUES ($1)", numero)
//		return err
//	})
//
// # What it does on top of pgxpool
//
//   - Pre-ping with a bound: a connection idle longer than PrePingAfter is pinged before use,
//     each ping bounded by PingTimeout. One failed ping condemns, without pinging them, every
//     connection idle as long as the failed one and every other connection that would need a
//     ping, so a pool full of connections that a NAT black-holed costs a caller one ping
//     timeout, not one per connection.
//   - A free liveness check on every acquire that needs no ping, of a connection idle at least
//     a millisecond (Unix): one non-blocking peek at the socket finds a connection the server
//     has already closed (an administrator's kill, idle_session_timeout, a restart), so it is
//     replaced before a statement is sent into it.
//   - Broken connections are closed at once, not after pgx's 15-second goodbye.
//   - Size and Overflow as in SQLAlchemy: at most Size+Overflow connections; the overflow
//     opened for a burst of callers stays for the next bursts and closes once idle
//     OverflowIdleTimeout (30 s), down to Size (SQLAlchemy closes it on return: a new
//     connection for nearly every request of bursty traffic).
//   - AcquireTimeout, with an [ErrPoolTimeout] error that states the pool's state and the last
//     connection error.
//   - Retries that cannot run a statement twice (see "The contract" below), with the config's
//     retry policy: exponential backoff with full jitter, within one time budget per call.
//   - [Pool.Tx], which retries a whole transaction function, and resolves a COMMIT whose answer
//     was lost by asking the server (pg_xact_status) instead of guessing; only an unknowable
//     outcome is an [AmbiguousCommitError].
//   - Failover: a write refused with 25006 makes the pool ask the server that refused, on the
//     same connection, whether it is in recovery or read-only for every session
//     (pg_settings.source); only then is it a failover, and every connection opened before it
//     is replaced (busy ones when they come back). A 25006 of the application's own (a READ
//     ONLY transaction, a read-only role or database, a replica the pool was meant for) is
//     returned at once and never retried. New connections are paced while the pool recovers
//     from an outage ([WithConnectPacing]).
//   - Dead flows: TCP_USER_TIMEOUT bounds a statement whose flow died; an idle horizon learned
//     when a ping finds no answer and a fresh connection to the same server answers promptly
//     (never below twice PingTimeout; [WithIdleHorizon] sets it by hand) replaces connections a
//     NAT has probably dropped, and has TCP keepalive keep the others alive (no SQL). A
//     pre-ping that has not answered within the hedge delay is given up for another
//     connection and settled in the background: no caller waits a whole PingTimeout, unless
//     connects or pings are measured so slow that the hedge delay reaches it ([Stats]
//     PingTimeoutWaits counts any other wait).
//   - Conflicts (40001, 40P01) are retried only where the server rolled the whole call back:
//     not for a CALL or DO that may COMMIT part of its work, nor for several statements in one
//     string.
//   - pgx's own hooks stay available ([WithPgxConfig]); events go to an [Observer]
//     (package otelpool exports them to OpenTelemetry).
//   - [Pool.Stats] and [Pool.DebugHandler], and logging through an optional [log/slog.Logger].
//
// # Read replicas
//
// [Cluster] is a primary and read replicas, one [Pool] each: writes and [Cluster.Tx] go to the
// primary, [Cluster.Replica] reads to the least loaded replica whose replay lag (bytes of WAL,
// measured in the background, [WithLagCheckEvery]) is within [WithMaxReplayLag], and to the
// primary when none is; a read that fails on a replica moves to another member at once.
// [WithReadYourWrites] makes a read see the cluster's earlier writes: it goes to a replica only
// once that replica has replayed past the last write's WAL position. A replica found promoted
// becomes the primary.
//
// # Marking work idempotent
//
// A connection lost while a statement was in flight ([retry.ConnLost]) leaves its outcome
// unknown, so by default Exec, Query and QueryRow do not retry it. Reads, and writes that are
// harmless to repeat, should go through [Pool.Idempotent], which does:
//
//	var n int
//	err := p.Idempotent().QueryRow(ctx, "SELECT count(*) FROM permis").Scan(&n)
//
// Writes that must happen once belong in [Pool.Tx].
//
// # The contract
//
// Every method keeps three promises, whatever the database and the network do:
//
//   - It never panics.
//   - A write is applied at most once, unless the error says the outcome is unknown
//     ([AmbiguousCommitError]): an acknowledged write is stored once, a write whose call
//     returned any other error is not stored (a statement outside [Pool.Tx] whose connection was
//     lost mid-flight is the exception the error class says: [retry.ConnLost] means it may
//     have run, and only [Pool.Idempotent] retries it).
//   - It returns within a bound. Let T be the caller's deadline (none: infinite), A the
//     config's AcquireTimeout (30 s by default), E the Retry policy's MaxElapsed (15 s), P
//     PingTimeout (2 s) and D the dead-flow bound [config.Config.DeadFlowAfter] (1 min).
//     Waiting for a connection (for a free slot, connecting, pre-pings, backoff between
//     attempts) ends by min(T, start + A) in all, over all attempts of the call; no retry begins
//     after start + min(E, A); a statement on a live connection runs until it ends or T; a
//     connection whose flow went dead (a NAT drop, a vanished host) fails within D, idle or
//     mid-statement (TCP keepalive and TCP_USER_TIMEOUT on Linux). So a call that can get no
//     connection (a database down or unreachable, a pool exhausted) returns within min(T, A), and a call that cannot get a slot gets
//     an [ErrPoolTimeout] error naming the bound that ran out and the last connection or ping
//     failure. A server that accepts a statement and never answers (a paused process) is
//     bounded by T and the server's statement_timeout only.
//
// Per method (NotSent, ConnLost and Conflict are [retry] classes):
//
//	method                 retries                                   errors a caller can get
//	Exec, QueryRow         NotSent, Conflict; Idempotent(): also     the statement's, *retry.Error, *TimeoutError, ErrClosed
//	                       ConnLost
//	Query                  as Exec, until the first row is read      as Exec; later ones through Rows.Err
//	SendBatch              as Exec, until the first result is read   as Exec; later ones from each result
//	CopyFrom               NotSent while acquiring only              as Exec
//	Begin, BeginTx         NotSent (acquire and BEGIN)               as Exec; nothing inside the transaction is retried
//	Acquire, Ping          NotSent                                   *retry.Error, *TimeoutError, ErrClosed
//	Tx                     the whole fn on NotSent, ConnLost and     fn's error, *retry.Error, *TimeoutError,
//	                       Conflict before COMMIT; after a lost      *AmbiguousCommitError (with the xid),
//	                       COMMIT, only when the server says it      ErrClosed
//	                       rolled back
//	Querier.Do             the whole fn on the Querier's classes     fn's error, *retry.Error, ErrClosed
//	StdDB                  database/sql's own (driver.ErrBadConn)    database/sql's
//	Close                  -                                         - (returns within the close grace)
//
// After Close every method returns [ErrClosed], and so do callers that were waiting for a
// connection when it began; a connection still held when the grace
// ([WithCloseGrace]) runs out has its socket closed, and is destroyed when released.
package pool
