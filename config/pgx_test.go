package config

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/testhelp"
)

func TestPgxPoolConfigCarriesEveryOption(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, remote)
	c.Size, c.Overflow = 4, 6
	c.WarmUp = true
	c.Recycle, c.RecycleJitter = 90*time.Second, 9*time.Second
	c.IdleTimeout = 40 * time.Second
	c.HealthCheckPeriod = 7 * time.Second
	c.PingTimeout = 1500 * time.Millisecond
	c.ConnectTimeout = 12 * time.Second

	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"MaxConns", pc.MaxConns, int32(10)},
		{"MinConns", pc.MinConns, int32(4)},
		{"MinIdleConns", pc.MinIdleConns, int32(0)},
		{"MaxConnLifetime", pc.MaxConnLifetime, 90 * time.Second},
		{"MaxConnLifetimeJitter", pc.MaxConnLifetimeJitter, 9 * time.Second},
		{"MaxConnIdleTime", pc.MaxConnIdleTime, 40 * time.Second},
		{"HealthCheckPeriod", pc.HealthCheckPeriod, 7 * time.Second},
		{"PingTimeout", pc.PingTimeout, 1500 * time.Millisecond},
		{"ConnectTimeout", pc.ConnConfig.ConnectTimeout, 12 * time.Second},
		{"DefaultQueryExecMode", pc.ConnConfig.DefaultQueryExecMode, pgx.QueryExecModeCacheStatement},
		{"ShouldPing set", pc.ShouldPing != nil, true},
		{"DialFunc set", pc.ConnConfig.DialFunc != nil, true},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	c.WarmUp = false
	if pc, err = c.PgxPoolConfig(); err != nil {
		t.Fatal(err)
	}
	if pc.MinConns != 0 {
		t.Errorf("without WarmUp MinConns = %d, want 0", pc.MinConns)
	}
}

func TestPgxPoolConfigIsAcceptedByPgxpool(t *testing.T) {
	testhelp.ClearEnv(t)
	pc, err := mustParse(t, remote).PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	// NewWithConfig panics for a config not made by pgxpool.ParseConfig. With MinConns 0 it
	// opens no connection.
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		t.Fatal(err)
	}
	pool.Close()
}

func TestPgxPoolConfigExecMode(t *testing.T) {
	tests := []struct {
		dsn  string
		want pgx.QueryExecMode
	}{
		{remote, pgx.QueryExecModeCacheStatement},
		{remote + "?pooler=transaction", pgx.QueryExecModeExec},
		{"postgres://u:pw@ep-x-pooler.eu.aws.neon.tech/d", pgx.QueryExecModeExec},
		{remote + "?pooler=transaction&default_query_exec_mode=simple_protocol", pgx.QueryExecModeSimpleProtocol},
		{remote + "?pooler=transaction&default_query_exec_mode=exec", pgx.QueryExecModeExec},
		{remote + "?default_query_exec_mode=cache_describe", pgx.QueryExecModeCacheDescribe},
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			testhelp.ClearEnv(t)
			pc, err := mustParse(t, tc.dsn).PgxPoolConfig()
			if err != nil {
				t.Fatal(err)
			}
			if got := pc.ConnConfig.DefaultQueryExecMode; got != tc.want {
				t.Fatalf("DefaultQueryExecMode = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPgxPoolConfigRevalidates(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, remote)
	c.Overflow = -1
	if _, err := c.PgxPoolConfig(); asError(t, err).Field != "Overflow" {
		t.Fatalf("PgxPoolConfig() = %v, want an Overflow error", err)
	}
	var hand Config = *defaults()
	if _, err := hand.PgxPoolConfig(); asError(t, err).Field != "Config" {
		t.Fatalf("hand-made Config: %v, want an error saying to use Parse", err)
	}
}

func TestPingDue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		mode  PrePingMode
		after time.Duration
		idle  time.Duration
		want  bool
	}{
		{PrePingIdle, time.Second, 0, false},
		{PrePingIdle, time.Second, time.Second, false},
		{PrePingIdle, time.Second, time.Second + 1, true},
		{PrePingIdle, 0, 0, false},
		{PrePingIdle, 0, 1, true},
		{PrePingIdle, time.Minute, 30 * time.Second, false},
		{PrePingAlways, time.Second, 0, true},
		{PrePingAlways, time.Second, time.Hour, true},
		{PrePingNever, time.Second, 0, false},
		{PrePingNever, time.Second, time.Hour, false},
	}
	for _, tc := range tests {
		c := Config{PrePing: tc.mode, PrePingAfter: tc.after}
		if got := c.PingDue(tc.idle); got != tc.want {
			t.Errorf("%v after %v, idle %v: PingDue = %v, want %v", tc.mode, tc.after, tc.idle, got, tc.want)
		}
	}
}

// The ShouldPing hook of PgxPoolConfig answers as PingDue does, with the settings of the
// moment it was built.
func TestShouldPingIsPingDue(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, mode := range []PrePingMode{PrePingIdle, PrePingAlways, PrePingNever} {
		c := mustParse(t, remote)
		c.PrePing, c.PrePingAfter = mode, 5*time.Second
		pc, err := c.PgxPoolConfig()
		if err != nil {
			t.Fatal(err)
		}
		want := *c
		c.PrePing, c.PrePingAfter = PrePingAlways, 0 // edits after PgxPoolConfig do not count
		for _, idle := range []time.Duration{0, time.Millisecond, 5 * time.Second, 5*time.Second + 1, time.Hour} {
			got := pc.ShouldPing(context.Background(), pgxpool.ShouldPingParams{IdleDuration: idle})
			if got != want.PingDue(idle) {
				t.Errorf("%v, idle %v: ShouldPing = %v, PingDue = %v", mode, idle, got, want.PingDue(idle))
			}
		}
	}
}

func TestNewDialer(t *testing.T) {
	t.Parallel()
	d := newDialer(10*time.Second, 30*time.Second)
	if d.Timeout != 10*time.Second {
		t.Errorf("Timeout = %v", d.Timeout)
	}
	k := d.KeepAliveConfig
	if !k.Enable || k.Idle != 30*time.Second || k.Interval != 10*time.Second || k.Count != 3 {
		t.Errorf("KeepAliveConfig = %+v, want enabled, 30s idle, 10s interval, 3 probes", k)
	}
	if k := newDialer(time.Second, 4*time.Second).KeepAliveConfig; k.Interval != 4*time.Second {
		t.Errorf("short keepalive: Interval = %v, want 4s", k.Interval)
	}
	off := newDialer(time.Second, -1)
	if off.KeepAliveConfig.Enable || off.KeepAlive >= 0 {
		t.Errorf("negative KeepAlive: %+v / %v, want keepalives off", off.KeepAliveConfig, off.KeepAlive)
	}
}
