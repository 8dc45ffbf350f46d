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
//	p, err := pool.New(ctx, cfg) // package pool; it logs cfg.Warnings
//
// Without package pool, [Config.PgxPoolConfig] gives a bare [pgxpool.Config] with the same
// settings (pool.New applies AcquireTimeout and Retry itself; with a bare pgxpool, bound
// Acquire's ctx with AcquireTimeout).
//
// # Where settings live
//
// Config holds what a connection string or the environment can set, and Retry, which has no
// key but is the policy of connecting at start as well as of every call, and is validated here
// with the rest. The settings of one pool's machinery that no connection string carries (its
// close grace, connect pacing, idle horizon, commit resolution, observers and logger, and a
// cluster's lag checks) are options of package pool, each with its default in its doc
// comment: they are chosen in code, with the program, not with the database.
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
// # Connection strings as they are pasted
//
// Parse recognises what other ecosystems write, converts what has one meaning, and adds a
// warning to [Config.Warnings] naming each conversion:
//
//	pasted                                              read as
//	" postgres://...\n" (white space around a URL)     the URL
//	"postgres://..." or 'host=... ' (quotes around)     what is inside
//	export DATABASE_URL="postgres://..." (.env line)    the value
//	POSTGRESQL://...                                    postgresql://...
//	postgresql+psycopg2://, postgres+asyncpg://, ...    postgresql:// (SQLAlchemy's driver dropped)
//	jdbc:postgresql://host/db?user=u&password=p         postgresql://host/db?user=u&password=p
//	Server=h;Port=5432;Database=d;User Id=u;            host=h port=5432 dbname=d user=u
//	  Password=p;SSL Mode=Require (ADO.NET, Npgsql)       password=p sslmode=require
//	?ssl=require (asyncpg, node-postgres)               sslmode=require (pgx reads only ssl=true)
//	?pgbouncer=true&connection_limit=5 (Prisma)         pooler=transaction&pool_max_conns=5
//	?ApplicationName=a&connectTimeout=5 (JDBC)          application_name=a&connect_timeout=5
//
// It refuses, with an *[Error] wrapping [ErrFormat] that names the form and the fix but
// never quotes the string: another database's URL (mysql://, a JDBC URL for another
// database, ...), an ADO.NET key with no pgx counterpart, Prisma's schema= and JDBC's
// currentSchema= (use options=-c search_path=NAME), and a URL with a '@' after its first
// '/' (a raw '/' in a password: write %2F). A password that is a template's placeholder
// ([YOUR-PASSWORD], <password>, ********, ${DB_PASSWORD}) wraps [ErrPlaceholder] and names
// the field to fill.
//
// Every key left after pgsteady's own must be a libpq key pgx understands, a PostgreSQL
// run-time setting (which pgx sends to the server; options=-c name=value is libpq's way
// for any other), or a custom setting with a '.' in its name. Any other key wraps
// [ErrUnknownKey] and names the closest known key: "config: max_overflows: unknown key;
// did you mean max_overflow?". A key written right after an unquoted password may be the
// rest of that password, so such an error names the password, not the key.
//
// # What Parse changes
//
//   - See the section above for the forms it converts. ssl=<sslmode value> in a URL is read
//     as sslmode=<value> unless an sslmode key is given.
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
// read as the host. Write '@' as %40 and ':' as %3A; the error does not show the string.
//
// Every invalid value fails in Parse or FromEnv (and in [Config.Validate] after edits) with
// an *[Error]. No error, warning, or output of a Config contains the password: values are
// shown only for pgsteady's own keys, a keyword/value string that does not split is
// described by byte position and the key before it, pgx's parse errors are cut to their own
// words before any quoted value (their causes described by type), connection strings are
// shown with password and sslpassword masked, and the passwords found are masked wherever
// else they might appear. A Config formats itself under every fmt verb (%v, %+v, %s, %q,
// %#v through [Config.GoString]), for [log/slog] ([Config.LogValue]) and as JSON
// ([Config.MarshalJSON]), always with the connection string masked.
package config
