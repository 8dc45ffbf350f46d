package config

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PgxPoolConfig validates c and returns a new *pgxpool.Config, made by [pgxpool.ParseConfig]
// from the cleaned connection string, carrying every option:
//
//	pgxpool.Config                   from Config
//	MaxConns                         Size + Overflow
//	MinConns                         Size with WarmUp, else 0
//	MaxConnLifetime                  Recycle
//	MaxConnLifetimeJitter            RecycleJitter
//	MaxConnIdleTime                  IdleTimeout
//	HealthCheckPeriod                HealthCheckPeriod
//	ShouldPing                       PingDue, with PrePing and PrePingAfter as at this call
//	PingTimeout                      PingTimeout
//	ConnConfig.ConnectTimeout        ConnectTimeout
//	ConnConfig.DialFunc              a net.Dialer with ConnectTimeout and TCP keepalive (KeepAlive)
//	ConnConfig.DefaultQueryExecMode  QueryExecModeExec with PoolerTransaction (unless the
//	                                 connection string chose simple_protocol)
//	ConnConfig.ChannelBinding        the removed channel_binding with KeepChannelBinding
//
// AcquireTimeout, LazyStart, Retry and OverflowIdleTimeout (the closing of idle connections
// beyond Size) have no pgxpool counterpart; package pool applies them. Each call returns a fresh config that the
// caller may change further; PG* environment variables are read again.
func (c *Config) PgxPoolConfig() (*pgxpool.Config, error) {
	if c.st == nil {
		return nil, &Error{Field: "Config", Limit: "made by config.Parse or config.FromEnv"}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(c.st.conn)
	if err != nil {
		return nil, parseError(err, c.st.secrets)
	}
	pc.MaxConns = int32(c.MaxConns())
	pc.MinConns = 0
	if c.WarmUp {
		pc.MinConns = int32(c.Size)
	}
	pc.MinIdleConns = 0
	pc.MaxConnLifetime = c.Recycle
	pc.MaxConnLifetimeJitter = c.RecycleJitter
	pc.MaxConnIdleTime = c.IdleTimeout
	pc.HealthCheckPeriod = c.HealthCheckPeriod
	pc.PingTimeout = c.PingTimeout
	rule := Config{PrePing: c.PrePing, PrePingAfter: c.PrePingAfter} // later edits of c do not reach the pool
	pc.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return rule.PingDue(p.IdleDuration) }

	cc := pc.ConnConfig
	cc.ConnectTimeout = c.ConnectTimeout
	cc.DialFunc = newDialer(c.ConnectTimeout, c.KeepAlive).DialContext
	if c.Pooler == PoolerTransaction && c.st.execMode != "simple_protocol" {
		cc.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	if c.KeepChannelBinding && c.st.channelBinding != "" {
		cc.ChannelBinding = c.st.channelBinding
	}
	return pc, nil
}

// PingDue reports whether a pooled connection that has been idle for idle must be pinged
// before it is handed out:
//
//	PrePing         ping due
//	PrePingIdle     when idle > PrePingAfter
//	PrePingAlways   always
//	PrePingNever    never
//
// It is the one statement of the pre-ping rule. The ShouldPing hook that
// [Config.PgxPoolConfig] builds returns PingDue(IdleDuration); package pool replaces that
// hook with one that pings by itself, and it asks PingDue whether a ping is due. PingDue is
// pure: it reads only PrePing and PrePingAfter.
func (c *Config) PingDue(idle time.Duration) bool {
	switch c.PrePing {
	case PrePingAlways:
		return true
	case PrePingNever:
		return false
	}
	return idle > c.PrePingAfter
}

// newDialer returns the dialer for every connection: connect timeout, and TCP keepalive
// probes after keepAlive of idleness (disabled when keepAlive < 0).
func newDialer(connectTimeout, keepAlive time.Duration) *net.Dialer {
	d := &net.Dialer{Timeout: connectTimeout}
	if keepAlive < 0 {
		d.KeepAlive = -1
		return d
	}
	d.KeepAlive = keepAlive
	d.KeepAliveConfig = net.KeepAliveConfig{
		Enable:   true,
		Idle:     keepAlive,
		Interval: min(keepAlive, keepAliveInterval),
		Count:    keepAliveCount,
	}
	return d
}
