// Package config turns a connection string, or the environment, into validated pool options
// with defaults that suit Neon and other cloud PostgreSQL services, and into a
// [pgxpool.Config] that carries them.
//
// It does what the seed's SQLAlchemy DatabaseConfig did by hand (build the URL from DB_*
// variables, drop channel_binding, pre-ping, recycle after 300 s, 10 + 20 connections, 30 s
// pool timeout) and adds what that fix lacked: a bound on every ping and connection attempt,
// TCP keepalives, jittered recycling, a query mode that works behind a transaction pooler,
// TLS by default, and an error for every bad value.
//
//	cfg, err := config.FromEnv() // or config.Parse(dsn)
//	if err != nil {
//		return err // an *config.Error naming the key, the value and the limit
//	}
//	for _, w := range cfg.Warnings {
//		log.Print(w)
//	}
//	pcfg, err := cfg.PgxPoolConfig()
//	...
//	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
//
// Package config does no network I/O. Parsing runs pgx's parser, which reads PG* environment
// variables and, when the connection string asks for them, files (passfile, service file,
// TLS certificates).
//
// # Sources
//
// [Parse] takes a postgres:// (or postgresql://) URL or a keyword/value string. Whatever it
// lacks comes from the PG* environment variables and libpq's defaults, exactly as pgx does
// it; Parse("") takes everything from there. [FromEnv] reads DATABASE_URL, else the seed's
// DB_USER, DB_PASSWORD, DB_HOST, DB_PORT, DB_NAME and DB_SSLMODE, else the PG* variables;
// its documentation gives the precise rules.
//
// # Connection string keys
//
// These keys are read and removed from the connection string (in both forms; quoted and
// escaped keyword/value values and percent-encoded URL values are handled as pgx handles
// them), so they never reach the server:
//
//	key                             field                          format
//	pool_size                       Size                           integer >= 1        (SQLAlchemy)
//	max_overflow                    Overflow                       integer >= 0        (SQLAlchemy)
//	pool_timeout                    AcquireTimeout                 seconds > 0         (SQLAlchemy)
//	pool_recycle                    Recycle                        seconds > 0         (SQLAlchemy)
//	pool_pre_ping                   PrePing                        true = always, false = never,
//	                                                               or idle, always, never
//	pool_max_conns                  Size + Overflow                integer >= 1        (pgx)
//	pool_min_conns                  WarmUp                         0 or the pool size  (pgx)
//	pool_min_idle_conns             -                              0 only              (pgx)
//	pool_max_conn_lifetime          Recycle                        duration > 0        (pgx)
//	pool_max_conn_lifetime_jitter   RecycleJitter                  duration >= 0       (pgx)
//	pool_max_conn_idle_time         IdleTimeout                    duration > 0        (pgx)
//	pool_health_check_period        HealthCheckPeriod              duration > 0        (pgx)
//	pool_ping_timeout               PingTimeout                    duration > 0        (pgx)
//	pooler                          Pooler                         transaction, session or none
//	pgsteady_keep_channel_binding   KeepChannelBinding             true or false
//	pgsteady_allow_insecure         AllowInsecure                  true or false
//	channel_binding                 (removed unless kept)          disable, prefer or require
//
// A duration is Go's syntax ("30s", "5m"). When a key appears twice the last one counts, as
// in pgx. Keys that say the same thing must agree: pool_max_conns with pool_size and
// max_overflow (given one of those, it sets the other; given neither, Size is
// min(10, pool_max_conns) and Overflow the rest), pool_recycle with pool_max_conn_lifetime.
// When the lifetime is given but not its jitter, the jitter is 10% of it. Any other key
// starting with pool_ or pgsteady_ is an error (a typo would otherwise be sent to the server
// as a setting and fail there). connect_timeout (seconds, libpq's key) stays in the string
// for pgx and sets ConnectTimeout; 0 means the default, never "wait forever". Every other key
// is left to pgx.
//
// # What Parse changes
//
//   - channel_binding is removed, as the seed did, and a warning says so, unless
//     pgsteady_keep_channel_binding=true (or, after Parse, KeepChannelBinding = true: the
//     value is kept aside and PgxPoolConfig applies it). PGCHANNELBINDING is left alone.
//   - sslmode=require is added when nothing chooses an sslmode (no sslmode key, no URL ssl
//     key, no PGSSLMODE, no service) and a host is neither a loopback address, "localhost",
//     nor a Unix socket. pgx's default would be prefer, which falls back to plaintext.
//   - A host that is not local but can be reached without TLS (sslmode disable, allow or
//     prefer, from wherever it comes) is an error unless pgsteady_allow_insecure=true.
//   - Pooler becomes PoolerTransaction when a host name contains "-pooler." (Neon's pooled
//     endpoints) or pooler=transaction is given; pooler=none or session overrides the host
//     name. PgxPoolConfig then uses [pgx.QueryExecModeExec]: pgx's default statement cache
//     uses named prepared statements, which fail through PgBouncer in transaction mode
//     (prepared statement "stmtcache_..." already exists / does not exist). A
//     default_query_exec_mode other than exec or simple_protocol is then an error.
//
// # Errors and secrets
//
// Every invalid value fails in Parse or FromEnv (and in [Config.Validate] after edits) with
// an *[Error]. No error, warning, or [Config.String] output contains the password: values are
// shown only for pgsteady's own keys, connection strings are shown with password and
// sslpassword masked, pgx's parse errors are rebuilt around the masked string, and the
// passwords found are masked wherever else they might appear. Printing a Config with fmt is
// safe too: the connection string is held behind an unexported pointer.
package config
