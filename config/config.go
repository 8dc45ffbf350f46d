package config

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/pgsteady/pgsteady/retry"
)

// PrePingMode says when a pooled connection is pinged before it is handed out.
type PrePingMode int

const (
	// PrePingIdle pings a connection that has been idle longer than [Config.PrePingAfter]
	// (pgx's own rule, made configurable). The default.
	PrePingIdle PrePingMode = iota
	// PrePingAlways pings on every acquire, like SQLAlchemy's pool_pre_ping=True: one more
	// round trip per acquire, nothing gained over PrePingIdle on a connection just used.
	PrePingAlways
	// PrePingNever never pings: the first query on a dead connection fails instead.
	PrePingNever
)

// String returns "idle", "always" or "never".
func (m PrePingMode) String() string {
	switch m {
	case PrePingIdle:
		return "idle"
	case PrePingAlways:
		return "always"
	case PrePingNever:
		return "never"
	}
	return "PrePingMode(" + strconv.Itoa(int(m)) + ")"
}

// PoolerMode says what sits between the pool and PostgreSQL.
type PoolerMode int

const (
	// PoolerNone: PostgreSQL itself, or a pooler that keeps a server connection per client
	// connection (session mode) or handles protocol-level prepared statements. pgx's default
	// statement cache is used.
	PoolerNone PoolerMode = iota
	// PoolerTransaction: a pooler in transaction mode (PgBouncer, Neon's "-pooler" endpoints,
	// Supabase's port 6543, RDS Proxy) that may run consecutive statements of one client
	// connection on different server connections. Queries use [pgx.QueryExecModeExec], which
	// prepares nothing by name.
	PoolerTransaction
)

// String returns "none" or "transaction".
func (m PoolerMode) String() string {
	switch m {
	case PoolerNone:
		return "none"
	case PoolerTransaction:
		return "transaction"
	}
	return "PoolerMode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults. Each [Config] field's comment says which one it takes. Sizes, the acquire wait
// and the lifetime match what services commonly give SQLAlchemy (pool_size=10,
// max_overflow=20, pool_timeout=30, pool_recycle=300); what such a setup leaves open-ended
// (pings, connection attempts, idle flows) gets a bound.
const (
	// DefaultSize is the number of connections the pool keeps (SQLAlchemy pool_size=10).
	DefaultSize = 10
	// DefaultOverflow is the number of extra connections allowed under load
	// (SQLAlchemy max_overflow=20), for at most 30.
	DefaultOverflow = 20
	// DefaultAcquireTimeout bounds the wait for a free connection (SQLAlchemy pool_timeout=30).
	DefaultAcquireTimeout = 30 * time.Second
	// DefaultRecycle is the connection lifetime (SQLAlchemy pool_recycle=300). It bounds how
	// long a connection stays pinned to one server process: after a failover, a restart or a
	// Neon compute moving, the pool is on fresh connections within minutes.
	DefaultRecycle = 300 * time.Second
	// DefaultRecycleJitter is 10% of DefaultRecycle. Connections opened together (at start,
	// with WarmUp, or all at once after an outage) would otherwise all expire in the same
	// health check and leave the pool empty at the same moment; spreading expiry over 30 s
	// (HikariCP uses 2.5% of its lifetime) turns that cliff into a trickle while keeping every
	// connection's life between 5 and 5.5 minutes.
	DefaultRecycleJitter = 30 * time.Second
	// DefaultPrePing is PrePingIdle: on a busy pool connections are rarely idle long enough
	// to be pinged, so it costs next to nothing, and it catches what idleness breaks.
	DefaultPrePing = PrePingIdle
	// DefaultPrePingAfter is 1 s: pgx's own threshold (HikariCP skips validation of a
	// connection used in the last 500 ms). The faults a ping catches (idle-session kills,
	// NAT and load-balancer idle drops, a suspended Neon compute) need seconds to minutes of
	// idleness, so pinging a connection used a moment ago buys nothing and costs a round trip.
	DefaultPrePingAfter = 1 * time.Second
	// DefaultPingTimeout bounds each pre-acquire ping. pgx waits for the caller's deadline by
	// default; a ping into a black-holed connection would then use up the whole acquire.
	DefaultPingTimeout = 2 * time.Second
	// DefaultConnectTimeout bounds one connection attempt (TCP, TLS, authentication). Neon
	// advises 10-15 s so that a cold start of a suspended compute fits.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultKeepAlive is the idle time before the first TCP keepalive probe: well under Azure
	// load balancer's 4-minute and AWS NAT gateway's 350-second idle timeouts, so that idle
	// pooled connections are not silently dropped by the network.
	DefaultKeepAlive = 30 * time.Second
	// DefaultHealthCheckPeriod is how often idle connections are checked for lifetime and
	// idle time, and the WarmUp minimum restored (pgx: 1 minute). At 30 s an expired or
	// long-idle connection is closed within 10% of DefaultRecycle.
	DefaultHealthCheckPeriod = 30 * time.Second
	// DefaultIdleTimeout closes a connection idle this long (pgx: 30 minutes). Two minutes is
	// short enough that a connection idle through a Neon auto-suspend (5 minutes) is gone
	// before it could be handed out, and long enough that a steady trickle of requests reuses
	// connections. (Overflow connections go sooner: DefaultOverflowIdleTimeout.)
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultOverflowIdleTimeout is 30 s: an overflow connection (one beyond Size) is closed
	// once it has been idle this long, so that traffic coming in bursts (callers that fire
	// together every few hundred milliseconds or seconds: a web service behind a load
	// balancer, a batch that fans out) keeps its overflow between bursts instead of paying a
	// new connection (TCP, TLS, authentication, a server process) for every request above
	// Size, while the server gets its processes back half a minute after a spike. SQLAlchemy
	// closes an overflow connection as soon as it is returned while pool_size are idle (0
	// here), which opened a connection for nearly every request of such bursts; HikariCP
	// closes connections above minimumIdle after idleTimeout (10 minutes, at least 10 s) of
	// disuse; Npgsql prunes after 300 s.
	DefaultOverflowIdleTimeout = 30 * time.Second
)

// TCP keepalive probing after [Config.KeepAlive] of idleness: one probe every
// min(KeepAlive, keepAliveInterval), and the connection is declared dead after
// keepAliveCount unanswered probes (with the defaults: 30 s + 3 × 10 s = 1 minute).
const (
	keepAliveInterval = 10 * time.Second
	keepAliveCount    = 3
)

// Config holds validated pool options. Get one from [Parse] or [FromEnv] (a zero Config is
// not usable), change fields if needed, then call [Config.Validate] again, and
// [Config.PgxPoolConfig] to build the pgx pool configuration.
//
// A Config is not safe for concurrent modification; reading it from several goroutines is.
// Printing a Config with fmt never shows the password.
type Config struct {
	// Size is the number of connections kept open when idle (SQLAlchemy pool_size). With
	// WarmUp they are opened at start and kept; without, they are opened on demand and closed
	// after IdleTimeout of disuse. Must be >= 1. Default [DefaultSize] (10).
	// Connection string: pool_size.
	Size int
	// Overflow is the number of extra connections opened under load (SQLAlchemy
	// max_overflow), so the pool has at most Size+Overflow connections ([Config.MaxConns]).
	// Package pool opens one only when waiting for a connection in use to come back would
	// take longer than opening one, as measured (HikariCP's reasoning), and closes it once it
	// has been idle OverflowIdleTimeout (a bare pgxpool closes it after IdleTimeout). Must be
	// >= 0.
	// Default [DefaultOverflow] (20). Connection string: max_overflow; pool_max_conns gives
	// Size+Overflow.
	Overflow int
	// AcquireTimeout is the longest a caller waits for a free connection (SQLAlchemy
	// pool_timeout), including the time to open one. pgxpool has no such option: package
	// pool applies it as a context deadline; with a bare pgxpool, bound Acquire's ctx with it.
	// Must be > 0. Default [DefaultAcquireTimeout] (30 s).
	// Connection string: pool_timeout (seconds).
	AcquireTimeout time.Duration
	// Recycle is the connection lifetime: a connection older than Recycle plus a random
	// 0..RecycleJitter is closed when next acquired or at the next health check, never while
	// in use (pgxpool MaxConnLifetime; SQLAlchemy pool_recycle). Must be > 0.
	// Default [DefaultRecycle] (300 s). Connection string: pool_recycle (seconds) or
	// pool_max_conn_lifetime (Go duration).
	Recycle time.Duration
	// RecycleJitter spreads expiry: each connection's lifetime gets a random extra between 0
	// and RecycleJitter (pgxpool MaxConnLifetimeJitter; pgx rounds it down to whole seconds).
	// Must be between 0 and Recycle. Default [DefaultRecycleJitter] (30 s).
	// Connection string: pool_max_conn_lifetime_jitter.
	RecycleJitter time.Duration
	// PrePing says when a connection is pinged before it is handed out; a connection whose
	// ping fails is closed and another one is tried. Default [DefaultPrePing] (PrePingIdle).
	// Connection string: pool_pre_ping (true = always, false = never, or idle/always/never).
	PrePing PrePingMode
	// PrePingAfter is the idle time after which PrePingIdle pings. Must be >= 0.
	// Default [DefaultPrePingAfter] (1 s).
	PrePingAfter time.Duration
	// PingTimeout bounds each ping (pgxpool PingTimeout; pgx's default is none, so a ping
	// into a black-holed connection would wait for the caller's deadline). Must be > 0.
	// Default [DefaultPingTimeout] (2 s). Connection string: pool_ping_timeout.
	PingTimeout time.Duration
	// ConnectTimeout bounds one connection attempt to one host, TLS and authentication
	// included. Must be > 0. Default [DefaultConnectTimeout] (10 s). Connection string:
	// connect_timeout (seconds, or PGCONNECT_TIMEOUT); 0 there (libpq: wait forever) means
	// the default.
	ConnectTimeout time.Duration
	// KeepAlive is the idle time before the first TCP keepalive probe; probes then go every
	// min(KeepAlive, 10 s) and 3 unanswered ones close the connection. Negative disables
	// keepalives; 0 is refused. Default [DefaultKeepAlive] (30 s).
	KeepAlive time.Duration
	// HealthCheckPeriod is how often pgxpool's health check closes expired and long-idle
	// connections and restores the WarmUp minimum. Must be > 0.
	// Default [DefaultHealthCheckPeriod] (30 s). Connection string: pool_health_check_period.
	HealthCheckPeriod time.Duration
	// IdleTimeout closes a connection idle this long, down to Size with WarmUp and to none
	// without (pgxpool MaxConnIdleTime). Must be > 0. Default [DefaultIdleTimeout] (2 min).
	// Connection string: pool_max_conn_idle_time.
	IdleTimeout time.Duration
	// OverflowIdleTimeout closes connections beyond Size once they have been idle this long
	// (those idle longest first, never below Size), so that the overflow opened for one burst
	// of callers serves the next ones. 0 closes an overflow connection when it is returned
	// while Size connections are idle, as SQLAlchemy's QueuePool does. Must be between 0 and
	// IdleTimeout. Default [DefaultOverflowIdleTimeout] (30 s). Connection string:
	// pool_overflow_idle_time.
	OverflowIdleTimeout time.Duration
	// Pooler says whether a transaction-mode pooler sits in front of PostgreSQL. Parse sets
	// PoolerTransaction when a host name contains "-pooler." (Neon), or ends in
	// ".pooler.supabase.com" with port 6543 (Supabase), or the connection string says
	// pooler=transaction; PoolerNone otherwise or for pooler=none or session.
	Pooler PoolerMode
	// KeepChannelBinding keeps channel_binding from the connection string. By default it is
	// removed and a warning added to Warnings. Connection string:
	// pgsteady_keep_channel_binding=true. Default false.
	KeepChannelBinding bool
	// AllowInsecure allows sslmode disable, allow or prefer (a plaintext path) to a host that
	// is not loopback or a Unix socket. Parse checks this before a caller could set the
	// field, so ask for it in the connection string: pgsteady_allow_insecure=true.
	// Default false.
	AllowInsecure bool
	// LazyStart makes package pool return without connecting. By default (false) pool.New
	// opens one connection, with Retry, before it returns, so a wrong host or password is
	// found at start.
	LazyStart bool
	// WarmUp opens Size connections at start and keeps at least Size open (pgxpool
	// MinConns = Size). Default false. Connection string: pool_min_conns (0 or the pool size).
	WarmUp bool
	// Retry is the policy package pool uses for connecting and for retrying what is safe to
	// retry. Default [retry.DefaultPolicy]; checked by [retry.Policy.Validate].
	Retry retry.Policy
	// Warnings lists what Parse or FromEnv changed or ignored, for the caller to log. They
	// never contain a password.
	Warnings []string

	st *state // what Parse found; behind a pointer so that printing a Config never shows it
}

// state is what Parse keeps from the connection string.
type state struct {
	conn           string  // cleaned connection string (contains the password)
	shown          string  // the same, password masked
	secrets        secrets // passwords to keep out of any output
	channelBinding string  // value removed from the connection string, "" if none
	execMode       string  // default_query_exec_mode from the connection string, "" if none
	poolerGiven    bool    // the connection string had a pooler key
	insecure       []insecureHost
}

// insecureHost is a non-loopback host that could be reached without TLS.
type insecureHost struct {
	host, mode string
}

// defaults returns a Config holding every default, without connection string.
func defaults() *Config {
	return &Config{
		Size:                DefaultSize,
		Overflow:            DefaultOverflow,
		AcquireTimeout:      DefaultAcquireTimeout,
		Recycle:             DefaultRecycle,
		RecycleJitter:       DefaultRecycleJitter,
		PrePing:             DefaultPrePing,
		PrePingAfter:        DefaultPrePingAfter,
		PingTimeout:         DefaultPingTimeout,
		ConnectTimeout:      DefaultConnectTimeout,
		KeepAlive:           DefaultKeepAlive,
		HealthCheckPeriod:   DefaultHealthCheckPeriod,
		IdleTimeout:         DefaultIdleTimeout,
		OverflowIdleTimeout: DefaultOverflowIdleTimeout,
		Retry:               retry.DefaultPolicy(),
	}
}

// MaxConns returns Size + Overflow, the most connections the pool opens.
func (c *Config) MaxConns() int { return c.Size + c.Overflow }

// Validate checks every field and returns the first problem as an *[Error] naming the field,
// the value and the limit. Parse and FromEnv call it; call it again after changing fields
// ([Config.PgxPoolConfig] does).
func (c *Config) Validate() error {
	err := c.validate()
	if err != nil && c.st != nil {
		return c.st.secrets.redactError(err)
	}
	return err
}

// validate checks the fields in the style of [retry.Policy.Validate]: one if per rule, the
// rules grouped by kind, and the first broken rule is the error.
func (c *Config) validate() error {
	for _, check := range []func() error{c.validateSize, c.validateTimes, c.validateModes, c.validateState} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) validateSize() error {
	if c.Size < 1 {
		return &Error{Field: "Size", Value: strconv.Itoa(c.Size), Limit: ">= 1"}
	}
	if c.Overflow < 0 {
		return &Error{Field: "Overflow", Value: strconv.Itoa(c.Overflow), Limit: ">= 0"}
	}
	if c.Overflow > math.MaxInt32-c.Size {
		return &Error{Field: "Overflow", Value: strconv.Itoa(c.Overflow),
			Limit: fmt.Sprintf("<= %d (Size + Overflow must fit in int32)", math.MaxInt32-c.Size)}
	}
	return nil
}

// validateTimes checks the durations, in field order.
func (c *Config) validateTimes() error {
	bad := func(field string, d time.Duration, limit string) error {
		return &Error{Field: field, Value: d.String(), Limit: limit}
	}
	if c.AcquireTimeout <= 0 {
		return bad("AcquireTimeout", c.AcquireTimeout, "> 0")
	}
	if c.Recycle <= 0 {
		return bad("Recycle", c.Recycle, "> 0")
	}
	if c.RecycleJitter < 0 || c.RecycleJitter > c.Recycle {
		return bad("RecycleJitter", c.RecycleJitter, "between 0 and Recycle ("+c.Recycle.String()+")")
	}
	if c.PrePingAfter < 0 {
		return bad("PrePingAfter", c.PrePingAfter, ">= 0")
	}
	if c.PingTimeout <= 0 {
		return bad("PingTimeout", c.PingTimeout, "> 0")
	}
	if c.ConnectTimeout <= 0 {
		return bad("ConnectTimeout", c.ConnectTimeout, "> 0")
	}
	if c.KeepAlive == 0 {
		return bad("KeepAlive", c.KeepAlive, "> 0, or < 0 to disable keepalives")
	}
	if c.HealthCheckPeriod <= 0 {
		return bad("HealthCheckPeriod", c.HealthCheckPeriod, "> 0")
	}
	if c.IdleTimeout <= 0 {
		return bad("IdleTimeout", c.IdleTimeout, "> 0")
	}
	if c.OverflowIdleTimeout < 0 || c.OverflowIdleTimeout > c.IdleTimeout {
		return bad("OverflowIdleTimeout", c.OverflowIdleTimeout, "between 0 and IdleTimeout ("+c.IdleTimeout.String()+")")
	}
	return nil
}

func (c *Config) validateModes() error {
	if c.PrePing < PrePingIdle || c.PrePing > PrePingNever {
		return &Error{Field: "PrePing", Value: c.PrePing.String(), Limit: "PrePingIdle, PrePingAlways or PrePingNever"}
	}
	if c.Pooler < PoolerNone || c.Pooler > PoolerTransaction {
		return &Error{Field: "Pooler", Value: c.Pooler.String(), Limit: "PoolerNone or PoolerTransaction"}
	}
	if err := c.Retry.Validate(); err != nil {
		return &Error{Field: "Retry", Err: err}
	}
	return nil
}

// validateState checks what depends on the connection string Parse read.
func (c *Config) validateState() error {
	if c.st == nil {
		return nil
	}
	if c.Pooler == PoolerTransaction && !safeBehindPooler(c.st.execMode) {
		return &Error{Field: "default_query_exec_mode", Value: c.st.execMode,
			Limit: "exec or simple_protocol behind a transaction pooler"}
	}
	if !c.AllowInsecure && len(c.st.insecure) > 0 {
		h := c.st.insecure[0]
		return &Error{Field: "sslmode", Value: h.mode,
			Limit: "require, verify-ca or verify-full for non-loopback host " + h.host +
				" (or " + keyAllowInsecure + "=true)"}
	}
	return nil
}

// safeBehindPooler reports whether a default_query_exec_mode value ("" = not given) works
// through a transaction-mode pooler; "" is safe because PgxPoolConfig then picks exec.
func safeBehindPooler(mode string) bool {
	return mode == "" || mode == "exec" || mode == "simple_protocol"
}
