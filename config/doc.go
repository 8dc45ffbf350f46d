// Package config turns a connection string, or the environment, into validated pool options
// with defaults that suit Neon and other cloud PostgreSQL services, and into a
// [pgxpool.Config] that carries them.
//
// The defaults are those of a pool that rides through what cloud databases do to idle
// connections: a connection idle for more than a second is pinged before it is handed out,
// connections are recycled after 5 minutes with jitter, 10 are kept and 20 more opened under
// load, and a caller waits at most 30 s for one. Every ping and connection attempt is
// bounded, TCP keepalives are on, the query mode works behind a transaction pooler, TLS is
// the default, and every bad value is an error. (A Python service gets the first part of
// this from SQLAlchemy's pool_pre_ping, pool_recycle, pool_size, max_overflow and
// pool_timeout; the same keys are understood here, with the same meanings.)
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
// it; Parse("") takes everything from there. [FromEnv] reads DATABASE_URL, else DB_USER,
// DB_PASSWORD, DB_HOST, DB_PORT, DB_NAME and DB_SSLMODE, else the PG* variables; its
// documentation gives the precise rules.
//
// # Connection string keys
//
// These keys are read and removed from the connection string (in both forms; quoted and
// escaped keyword/value values and percent-encoded URL values are handled as pgx handles
// them), so they never reach the server:
//
//	key                            sets                   accepts                             from
//	pool_size                      Size                   an integer >= 1                     SQLAlchemy
//	max_overflow                   Overflow               an integer >= 0                     SQLAlchemy
//	pool_timeout                   AcquireTimeout         a number of seconds > 0             SQLAlchemy
//	pool_recycle                   Recycle                a number of seconds > 0             SQLAlchemy
//	pool_pre_ping                  PrePing                true, false, idle, always or never  SQLAlchemy
//	pool_max_conns                 Size + Overflow        an integer >= 1                     pgx
//	pool_min_conns                 WarmUp                 0 or the pool size                  pgx
//	pool_min_idle_conns            -                      0 (WarmUp keeps connections)        pgx
//	pool_max_conn_lifetime         Recycle                a duration > 0 such as 30s          pgx
//	pool_max_conn_lifetime_jitter  RecycleJitter          a duration >= 0 such as 30s         pgx
//	pool_max_conn_idle_time        IdleTimeout            a duration > 0 such as 30s          pgx
//	pool_overflow_idle_time        OverflowIdleTimeout    a duration >= 0 such as 30s
//	pool_health_check_period       HealthCheckPeriod      a duration > 0 such as 30s          pgx
//	pool_ping_timeout              PingTimeout            a duration > 0 such as 30s          pgx
//	pooler                         Pooler                 transaction, session or none
//	pgsteady_keep_channel_binding  KeepChannelBinding     true or false
//	pgsteady_allow_insecure        AllowInsecure          true or false
//	channel_binding                (removed unless kept)  disable, prefer or require          libpq
//
// pool_pre_ping=true pings always and false never; idle pings a connection idle longer than
// PrePingAfter (see [Config.PingDue]). A duration is Go's syntax ("30s", "5m"). When a key
// appears twice the last one counts, as in pgx. Keys that say the same thing must agree:
// pool_max_conns with pool_size and max_overflow (given one of those, it sets the other;
// given neither, Size is min(10, pool_max_conns) and Overflow the rest), pool_recycle with
// pool_max_conn_lifetime. When the lifetime is given but not its jitter, the jitter is 10% of
// it. Any other key starting with pool_ or pgsteady_ is an error (a typo would otherwise be
// sent to the server as a setting and fail there). connect_timeout (seconds, libpq's key)
// stays in the string for pgx and sets ConnectTimeout; 0 means the default, never "wait
// forever". Every other key is left to pgx.
//
// # What Parse changes
//
//   - A URL whose scheme names a Python driver, postgresql+driver:// as SQLAlchemy writes it
//     (+psycopg2, +psycopg, +asyncpg, ...), is read as postgresql://, and a warning in
//     [Config.Warnings] says so. In such a URL, ssl=require (asyncpg's spelling; any libpq
//     sslmode value) is read as sslmode=require unless an sslmode key is given.
//   - channel_binding is removed (pgx then uses PGCHANNELBINDING or its default, prefer), and
//     a warning in [Config.Warnings] says so, unless pgsteady_keep_channel_binding=true (or,
//     after Parse, KeepChannelBinding = true: the value is kept aside and PgxPoolConfig
//     applies it).
//   - sslmode=require is added when nothing chooses an sslmode (no sslmode key, no URL ssl
//     key, no PGSSLMODE, no service) and a host is neither a loopback address, "localhost",
//     nor a Unix socket. pgx's default would be prefer, which falls back to plaintext.
//   - A host that is not local but can be reached without TLS (sslmode disable, allow or
//     prefer, from wherever it comes) is an error unless pgsteady_allow_insecure=true.
//   - Pooler becomes PoolerTransaction when a host is a known transaction pooler (a name
//     containing "-pooler.", Neon's pooled endpoints; a name ending in
//     ".pooler.supabase.com" on port 6543, Supabase's transaction pooler, whose port 5432 is
//     session mode) or pooler=transaction is given; pooler=none or session overrides the
//     host name. PgxPoolConfig then uses [pgx.QueryExecModeExec]: pgx's default statement
//     cache uses named prepared statements, which fail through PgBouncer in transaction
//     mode (prepared statement "stmtcache_..." already exists / does not exist). A
//     default_query_exec_mode other than exec or simple_protocol is then an error.
//
// # Errors and secrets
//
// A URL whose host list holds a '@' is an error: a user name or password written with a raw
// '@' (or '@' and ':') is cut by libpq and pgx at the first '@', and the rest of it would be
// read as the host. Write '@' as %40 and ':' as %3A; the error masks the whole password.
//
// Every invalid value fails in Parse or FromEnv (and in [Config.Validate] after edits) with
// an *[Error]. No error, warning, or [Config.String] output contains the password: values are
// shown only for pgsteady's own keys, connection strings are shown with password and
// sslpassword masked, pgx's parse errors are rebuilt around the masked string, and the
// passwords found are masked wherever else they might appear. Printing a Config with fmt is
// safe too: the connection string is held behind an unexported pointer.
package config
