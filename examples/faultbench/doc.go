// Command faultbench measures pgsteady against a bare pgxpool and database/sql (over
// pgx/v5/stdlib), each with its defaults, under the faults pgsteady is built to ride through,
// and prints one Markdown table of what their callers saw.
//
//	go run ./examples/faultbench
//	go run ./examples/faultbench -faults kill,restart -duration 5s -clients pgsteady,pgxpool
//
// It starts one disposable PostgreSQL with TLS and PgBouncer in transaction mode in Docker
// (the test harness of internal/pgharness; every port on 127.0.0.1), and removes it on exit
// and on SIGINT or SIGTERM.
//
// # Workload
//
// For each fault every client gets a database of its own, holding kv(k int primary key, v
// text) with 1000 rows and writes(key text, at timestamptz), which has no unique constraint
// so that a duplicated insert shows. The three clients run at the same time, so they see the
// same fault. Each runs -readers goroutines (default 8) of single-row SELECTs by primary key
// and -writers goroutines (default 2) of INSERTs with unique keys, pausing -pause (10 ms)
// after each request, for -duration (10 s) per fault. Every request gets its own 10 s
// deadline (-timeout), like an HTTP handler's: a request that hangs counts as an error after
// 10 s. -clients picks some of the three clients. The whole run takes about 80 s on two
// cores.
//
//	client        open                               read                          write
//	pgsteady      config.Parse(dsn), pool.New        p.Idempotent().QueryRow       p.Tx(INSERT)
//	pgxpool       pgxpool.New(ctx, dsn)              QueryRow                      Exec(INSERT)
//	database/sql  sql.Open("pgx", dsn)               QueryRowContext               ExecContext(INSERT)
//
// p.Idempotent() is pgsteady's documented way to say a statement may run twice, so that a
// read whose connection was lost in flight is retried; writes that must happen once go
// through p.Tx, which retries only what cannot have committed and reports a lost COMMIT as a
// *pool.AmbiguousCommitError.
//
// # Faults (-faults)
//
//	none        baseline
//	idle        the server closes sessions idle for 2 s (idle_session_timeout); requests
//	            are spaced 3 s apart per worker, so every connection dies between two uses
//	kill        every client backend is terminated (pg_terminate_backend) once a second
//	restart     the server is restarted twice, about 1 s down each time
//	blackhole   each client reaches PostgreSQL through its own proxy that silently drops
//	            flows idle for 2 s (no RST, no FIN), as cloud NATs and load balancers do;
//	            the pools are filled, left idle 3 s, then the workload runs
//	bouncer     PgBouncer 1.18 in transaction mode; pgsteady gets pooler=transaction in
//	            its DSN (it recognises Neon's "-pooler." hosts by itself, not 127.0.0.1),
//	            the others the same DSN without it
//
// # Checking writes
//
// After each fault the writes table is read back: every acknowledged insert must be present
// exactly once (else it is lost, or duplicated), and every insert whose caller got an error
// is looked up. An error that was not reported as ambiguous but whose row exists is a
// "failed but present" write: the caller was told it failed, retries it, and stores it twice.
//
// The exit status is 0 when pgsteady had no read error, no lost, duplicated or failed but
// present write in any fault, 1 when it had, 2 when the benchmark itself could not run.
package main
