// Package otelpool reports a [pool.Pool]'s metrics and retries through OpenTelemetry, with no
// glue code: [NewObserver] turns the pool's events into metrics and span events, and
// [Observer.Register] publishes its [pool.Pool.Stats] as observable instruments, under the same
// pool name.
//
//	obs, err := otelpool.NewObserver(mp, otelpool.WithPoolName("orders"))
//	...
//	p, err := pool.New(ctx, cfg, pool.WithObserver(obs))
//	...
//	reg, err := obs.Register(p)
//	...
//	defer reg.Unregister()
//
// It uses only the OpenTelemetry API; the application chooses the SDK and the exporter
// (Prometheus, OTLP, ...). Programs that import pool alone compile in no OpenTelemetry
// package: only this package depends on it.
//
// # Metrics
//
// Names follow the OpenTelemetry semantic conventions for database client connection pools
// where one exists (they are still experimental there), and use the pgsteady namespace
// otherwise. Every instrument carries db.client.connection.pool.name ([WithPoolName]). "from"
// says whether [Observer.Register] publishes it or the pool's events record it (the Observer
// given to [pool.WithObserver]).
//
//	instrument                             kind           unit          from      attribute
//	db.client.connection.count             UpDownCounter  {connection}  Register  db.client.connection.state
//	db.client.connection.max               UpDownCounter  {connection}  Register
//	db.client.connection.idle.max          UpDownCounter  {connection}  Register
//	db.client.connection.pending_requests  UpDownCounter  {request}     Register
//	db.client.connection.timeouts          Counter        {timeout}     Register
//	pgsteady.pool.connection.opened        Counter        {connection}  Register
//	pgsteady.pool.ping.timeout_waits       Counter        {ping}        Register
//	db.client.connection.wait_time         Histogram      s             events    error.type (failures only)
//	pgsteady.pool.retries                  Counter        {retry}       events    pgsteady.retry.class
//	pgsteady.pool.ping.failures            Counter        {ping}        events
//	pgsteady.pool.connection.closed        Counter        {connection}  events    pgsteady.connection.close_reason
//	pgsteady.pool.commits                  Counter        {commit}      events    pgsteady.commit.outcome
//
// In Prometheus (through the OpenTelemetry exporter) these become
// db_client_connection_count{db_client_connection_pool_name, db_client_connection_state},
// db_client_connection_wait_time_seconds (a histogram), pgsteady_pool_retries_total and so on.
//
// The state is "idle" or "used"; the count leaves out connections still being opened, so
// idle + used can be below [pool.Stats].TotalConns for a moment. idle.max is the
// pool's Size (a connection given back while Size are idle is closed); max is Size + Overflow.
// ping.timeout_waits is [pool.Stats].PingTimeoutWaits: 0 wherever the pool can hedge its
// pre-pings.
// wait_time records every acquire attempt, in seconds: a failed one has error.type "timeout"
// (it ended in [pool.ErrPoolTimeout]), "canceled" (the caller's ctx), "closed"
// ([pool.ErrClosed]) or "_OTHER" (a connection error). The reasons and outcomes are the
// pool's [pool.CloseReasons] and [pool.CommitOutcomes], each declared up front; the
// retry classes are [retry.Class] names. The Observer's measurements carry the caller's ctx
// where the pool has one, so an SDK that keeps exemplars links them to the caller's trace.
//
// # Traces
//
// Each retry adds an event named "pgsteady.retry" to the span in the caller's ctx, when that
// span is recording, with attributes pgsteady.retry.attempt (the attempt that failed, from 1),
// pgsteady.retry.class, pgsteady.retry.delay (seconds before the next attempt), error.type
// (the SQLSTATE of a server error, else the error's Go type) and error.message.
package otelpool
