// Package doctor tells a service author what stands between their service and their database,
// and what to change: [Diagnose] reads a [config.Config] as package pool would use it, probes
// the path, asks the server about itself and compares its timeouts and limits with the pool's
// options. [Watch] then watches the path live, so that an idle timeout or a failover can be
// seen as it happens.
//
//	cfg, err := config.FromEnv()
//	...
//	r, err := doctor.Diagnose(ctx, cfg, doctor.Options{Replicas: 8})
//	...
//	r.WriteText(os.Stdout) // or json.NewEncoder(w).Encode(r), e.g. on a debug route
//
// The command examples/doctor prints the same report from a connection string or the
// environment.
//
// # What it checks
//
//	section            finding ID                  what
//	connection string  conn.warning                each warning of config.Parse/FromEnv (converted or removed keys)
//	                   conn.sslmode                whether the sslmode verifies the server
//	                   conn.pooler                 Pooler=transaction (from the host name or pooler=)
//	path               path.provider               Neon -pooler, Supabase pooler, RDS Proxy, Aurora writer/reader, Azure, by host name
//	                   path.dns                    the DNS answers
//	                   path.tcp                    TCP connect time; refused or unanswered
//	                   path.tls                    TLS offered, its version and cipher
//	                   path.verify-full            whether verify-full (and verify-ca) would accept the certificate
//	                   path.auth                   the methods offered: SCRAM, SCRAM-SHA-256-PLUS (channel binding), md5
//	                   path.session                a session opens with the configuration (errors with their retry class)
//	                   path.rtt                    round-trip time, median of a few pings
//	server             server.version               version
//	                   server.standby              pg_is_in_recovery()
//	                   server.read-only            default_transaction_read_only and its level (pg_settings.source)
//	                   server.pooler               a transaction pooler, by behaviour, against Config.Pooler
//	                   server.max-connections      Size + Overflow times the replicas against max_connections
//	timeouts           timeout.idle-session        idle_session_timeout against IdleTimeout, Recycle, WarmUp, PrePing
//	                   timeout.idle-in-transaction idle_in_transaction_session_timeout
//	                   timeout.statement           statement_timeout
//	                   timeout.keepalive           the pool's TCP keepalive against NAT and load-balancer idle limits
//
// Levels are ok, warn (works, at a cost or a risk the text names) and fail (does not work, or
// will not when the named condition occurs). Findings that need the server are absent when no
// session could be opened; the failure that stopped the diagnosis is a fail finding.
//
// # Why a package under pool
//
// The diagnosis judges the pool's own options (PrePing, Recycle, IdleTimeout, KeepAlive,
// Size and Overflow) as package pool applies them, and services expose it beside
// [github.com/pgsteady/pgsteady/pool.Pool.DebugHandler]; it is a separate package so that pool's API stays small and a
// service that never diagnoses does not carry the probe. It depends on config and retry
// (the class of each error is [retry.Classify]'s), not on pool.
//
// # Limits
//
// Only the first host of a multi-host connection string is probed. SCRAM-SHA-256-PLUS is seen
// only where the server offers it to the configured user (a pooler in front shows its own
// methods). The pooler check proves a transaction pooler when it sees one; a session pooler is
// indistinguishable from a direct connection by behaviour. The server's settings are those of
// the session the diagnosis opened (a role's or a database's settings included).
package doctor
