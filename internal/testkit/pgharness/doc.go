// Package pgharness starts a disposable PostgreSQL for pgsteady's tests and examples, and injects
// real faults into it.
//
// The server runs in one container started through testcontainers-go: PostgreSQL with TLS on
// (a throwaway CA and server certificate made per run with crypto/x509), SCRAM password
// authentication and hostssl only, and PgBouncer 1.18 in transaction mode with TLS in front of it
// (the stand-in for Neon's -pooler endpoint). Ports are published on 127.0.0.1 only.
//
// PostgreSQL runs under a supervisor loop inside the container, so [Server.Restart],
// [Server.StopServer] and [Server.StartServer] stop and start the server process while the
// published port stays the same. [Server.TerminateBackends], [Server.SetIdleSessionTimeout] and
// [Server.Pause] inject the other server-side faults; package faultproxy adds network faults.
//
// # Failover
//
// [StartPair] starts a [Pair]: a primary and a streaming-replication standby made from the same
// image (pg_basebackup over the Docker bridge), with the same passwords and certificate.
// [Pair.Failover] fences the old primary ([OldPrimaryReadOnly]: default_transaction_read_only,
// writes fail with 25006; or [OldPrimaryStopped]), promotes the standby and moves [StableName]
// to it. The stable name is served by a [Resolver] that the test puts in pgx's
// ConnConfig.LookupFunc: pgx looks names up on every connect, and a lookup may return host:port,
// so the name can move between servers published on different ports; connections already open
// stay on the old primary, as after a real DNS change. [Pair.Rejoin] then makes the old primary
// a standby of the new one (a base backup of it), and [Pair.AddStandby] adds more standbys of
// the primary. [MultiHostDSN] lists several servers for target_session_attrs.
//
// # Without Docker
//
// [StartLocal] runs the same set-up (TLS, SCRAM, hostssl only, the same database, users and
// passwords' shape) as a throwaway cluster of the PostgreSQL server binaries found on the
// machine ([FindLocalBinaries]), in a temporary folder, on a free 127.0.0.1 port, as an
// unprivileged user when run as root; [Cluster.Close] removes it all. [StartEmbedded] tries
// Docker and then the local binaries, and says in one error how to get either when neither is
// there; both kinds satisfy [Database], which the examples use.
//
// # Images
//
// With $PGSTEADY_TEST_IMAGE set, that image is used. Otherwise the image tagged [LocalImage] is
// used if Docker has it, and else built from the embedded Dockerfile on top of the public
// postgres:17-bookworm image (override with $PGSTEADY_TEST_BASE_IMAGE), then kept for later runs.
// An air-gapped machine builds [LocalImage] beforehand from a local Debian base: see .ci/run.
//
// # Cleanup
//
// Containers carry a label with the test process's pid. [Server.Close] removes them; [Main] also
// removes them on SIGINT/SIGTERM, and [Start] removes those whose process has died (a panicking
// test never reaches its cleanup). testcontainers' reaper is off unless
// TESTCONTAINERS_RYUK_DISABLED says otherwise. testcontainers' own log is silenced unless
// $PGSTEADY_HARNESS_LOG is set.
package pgharness
