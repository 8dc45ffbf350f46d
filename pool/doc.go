// Package pool is pgsteady's resilient PostgreSQL pool: a [pgxpool.Pool] configured by package
// config, that hides the faults of cloud databases from its callers where that is safe.
//
// # What it does on top of pgxpool
//
//   - Pre-ping with a bound: a connection idle longer than PrePingAfter is pinged before use,
//     each ping bounded by PingTimeout. One failed ping condemns, without pinging them, every
//     connection idle as long as the failed one and every other connection that would need a
//     ping, so a pool full of connections that a NAT black-holed costs a caller one ping
//     timeout, not one per connection.
//   - A free liveness check on every other acquire: one non-blocking peek at the socket finds a
//     connection the server has already closed (an administrator's kill, idle_session_timeout,
//     a restart), so it is replaced before a statement is sent into it.
//   - Broken connections are closed at once, not after pgx's 15-second goodbye.
//   - Size and Overflow as in SQLAlchemy: at most Size+Overflow connections, at most Size idle.
//   - AcquireTimeout, with an [ErrPoolTimeout] error that states the pool's state and the last
//     connection error.
//   - Retries that cannot run a statement twice (see [Pool] for the table), with the config's
//     retry policy: exponential backoff with full jitter, bounded by the caller's ctx.
//   - [Pool.Tx], which retries a whole transaction function, and reports a lost COMMIT as an
//     [AmbiguousCommitError] rather than guessing.
//   - [Pool.Stats] and [Pool.DebugHandler], and logging through an optional [log/slog.Logger].
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
package pool
