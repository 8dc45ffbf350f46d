// Command faultbench measures pgsteady against a bare pgxpool and database/sql (over
// pgx/v5/stdlib), each with its defaults, under the faults pgsteady is built to ride through,
// and prints Markdown tables of what their callers saw.
//
//	go -C examples run ./faultbench
//	go -C examples run ./faultbench -faults kill,restart -duration 5s -clients pgsteady,pgxpool
//
// It starts one disposable PostgreSQL with TLS and PgBouncer in transaction mode in Docker
// (the test harness of internal/testkit/pgharness; every port on 127.0.0.1), and removes it on exit
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
// 10 s. -clients picks some of the three clients. The whole run takes 2 to 3 minutes on
// two cores (the horizon fault runs three times -duration, the failover fault starts a pair
// of servers of its own).
//
//	client        open                               read                          write
//	pgsteady      config.Parse(dsn), pool.New        p.Idempotent().QueryRow       p.Tx(INSERT)
//	pgxpool       pgxpool.New(ctx, dsn)              QueryRow                      Exec(INSERT)
//	database/sql  sql.Open("pgx", dsn)               QueryRowContext               ExecContext(INSERT)
//
// p.Idempotent() is pgsteady's documented way to say a statement may run twice, so that a
// read whose connection was lost in flight is retried; writes that must happen once go
// through p.Tx, which retries only what cannot have committed. When a COMMIT's answer is
// lost, p.Tx asks the server what became of the transaction (pg_xact_status): committed, the
// write is acknowledged; aborted, it runs again; unknowable, it is reported as a
// *pool.AmbiguousCommitError. The report counts each. -commit-resolution=false builds
// pgsteady with pool.WithoutCommitResolution, which reports every lost COMMIT as ambiguous.
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
//	horizon     requests just slower than the black-hole horizon: each client through its
//	            own proxy that silently drops flows idle for 2 s, from the start; 4 readers
//	            and no writer per client, each pausing 3 s after every read, for three
//	            times -duration (issue 13's schedule)
//	stall       each client through its own proxy; once a second the proxies swallow the
//	            server's answers for 300 ms while forwarding the client's bytes, then reset
//	            every flow: COMMITs in flight reach the server and their answers are lost
//	failover    a primary and a streaming standby of their own (one pair for the three
//	            clients, each with a database of its own), reached through a stable host
//	            name that the clients resolve with the pair's resolver (pgx's LookupFunc).
//	            At 30% of the run the old primary turns read-only (writes get SQLSTATE
//	            25006), the standby catches up with its WAL and is promoted, and the name
//	            moves to it. Reads answer inet_server_addr(), so that reads still served by
//	            the old primary show; a second table gives, per client, the time from the
//	            promotion to the first acknowledged write, the errors, and the reads sent
//	            after the switch that the old primary answered. Writes are checked on the
//	            new primary.
//	bouncer     PgBouncer 1.18 in transaction mode; pgsteady gets pooler=transaction in
//	            its DSN (it recognises Neon's "-pooler." hosts by itself, not 127.0.0.1),
//	            the others the same DSN without it
//
// The replica faults compare, instead of the three clients, two ways of reading with
// pgsteady, at the same time on a primary and two streaming standbys of their own: a
// pool.Cluster (reads through c.Replica(), lag bound 1 MiB) and a pool.Pool on the
// primary alone. Readers read kv by primary key (answering pg_is_in_recovery(), so that the
// share served by a standby shows); writers insert a row and read it back at once, through
// c.Replica() with pool.WithReadYourWrites, or on the primary: a read back that misses its
// row is a stale read. A third client, the control, is the cluster reading back without
// read-your-writes: its stale reads show what the option prevents. Their table follows the
// others.
//
//	replica-kill  from 30% to 70% of the run the first standby's server is down
//	replica-lag   from 30% to 70% of the run the first standby's replay is paused
//	              (pg_wal_replay_pause()) and about 4 MiB of WAL is written
//
// # Checking writes
//
// After each fault the writes table is read back: every acknowledged insert must be present
// exactly once (else it is lost, or duplicated), and every insert whose caller got an error
// is looked up. An error that was not reported as ambiguous but whose row exists is a
// "failed but present" write: the caller was told it failed, retries it, and stores it twice.
//
// The exit status is 0 when pgsteady had no read error, no lost, duplicated or failed but
// present write in any fault and, with commit resolution on, no write left ambiguous, and no
// error or stale read back under a replica fault; 1 when it had; 2 when the benchmark itself
// could not run.
package main
