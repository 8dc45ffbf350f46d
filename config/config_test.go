package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/retry"
)

// mustParse parses s or fails the test.
func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return c
}

// asError returns err as an *Error or fails the test.
func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	return e
}

const remote = "postgres://app:S3cr3t-pw@db.example.com:5432/app"

func TestDefaults(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, remote)
	want := &Config{
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
		Pooler:              PoolerNone,
		Retry:               retry.DefaultPolicy(),
		st:                  c.st,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(remote) =\n%+v\nwant\n%+v", *c, *want)
	}
	if c.MaxConns() != 30 {
		t.Errorf("MaxConns() = %d, want 30", c.MaxConns())
	}
}

// TestDefaultValues pins the documented numbers, so that a change is deliberate.
func TestDefaultValues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"DefaultSize", DefaultSize, 10},
		{"DefaultOverflow", DefaultOverflow, 20},
		{"DefaultAcquireTimeout", DefaultAcquireTimeout, 30 * time.Second},
		{"DefaultRecycle", DefaultRecycle, 300 * time.Second},
		{"DefaultRecycleJitter", DefaultRecycleJitter, DefaultRecycle / 10},
		{"DefaultPrePing", DefaultPrePing, PrePingIdle},
		{"DefaultPrePingAfter", DefaultPrePingAfter, time.Second},
		{"DefaultPingTimeout", DefaultPingTimeout, 2 * time.Second},
		{"DefaultConnectTimeout", DefaultConnectTimeout, 10 * time.Second},
		{"DefaultKeepAlive", DefaultKeepAlive, 30 * time.Second},
		{"DefaultHealthCheckPeriod", DefaultHealthCheckPeriod, 30 * time.Second},
		{"DefaultIdleTimeout", DefaultIdleTimeout, 2 * time.Minute},
		{"DefaultOverflowIdleTimeout", DefaultOverflowIdleTimeout, 30 * time.Second},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if DefaultKeepAlive+keepAliveCount*keepAliveInterval >= 240*time.Second {
		t.Errorf("keepalive detection %v is not under Azure LB's 4 minutes",
			DefaultKeepAlive+keepAliveCount*keepAliveInterval)
	}
}

func TestModeStrings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		got, want string
	}{
		{PrePingIdle.String(), "idle"},
		{PrePingAlways.String(), "always"},
		{PrePingNever.String(), "never"},
		{PrePingMode(7).String(), "PrePingMode(7)"},
		{PoolerNone.String(), "none"},
		{PoolerTransaction.String(), "transaction"},
		{PoolerMode(-1).String(), "PoolerMode(-1)"},
	} {
		if tc.got != tc.want {
			t.Errorf("String() = %q, want %q", tc.got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	testhelp.ClearEnv(t)
	base := mustParse(t, remote)
	insecureBase := mustParse(t, "postgres://app:pw@db.example.com/app?sslmode=disable&pgsteady_allow_insecure=true")
	execBase := mustParse(t, "postgres://app:pw@db.example.com/app?default_query_exec_mode=cache_describe")

	tests := []struct {
		name      string
		base      *Config
		edit      func(*Config)
		wantField string // "" = valid
	}{
		{"defaults", base, func(*Config) {}, ""},
		{"Size 0", base, func(c *Config) { c.Size = 0 }, "Size"},
		{"Size 1", base, func(c *Config) { c.Size = 1 }, ""},
		{"Overflow -3", base, func(c *Config) { c.Overflow = -3 }, "Overflow"},
		{"Overflow 0", base, func(c *Config) { c.Overflow = 0 }, ""},
		{"Overflow beyond int32", base, func(c *Config) { c.Overflow = math.MaxInt32 }, "Overflow"},
		{"AcquireTimeout 0", base, func(c *Config) { c.AcquireTimeout = 0 }, "AcquireTimeout"},
		{"Recycle 0", base, func(c *Config) { c.Recycle = 0 }, "Recycle"},
		{"Recycle -1s", base, func(c *Config) { c.Recycle = -time.Second }, "Recycle"},
		{"RecycleJitter -1s", base, func(c *Config) { c.RecycleJitter = -time.Second }, "RecycleJitter"},
		{"RecycleJitter > Recycle", base, func(c *Config) { c.Recycle = 10 * time.Second }, "RecycleJitter"},
		{"RecycleJitter 0", base, func(c *Config) { c.RecycleJitter = 0 }, ""},
		{"PrePing unknown", base, func(c *Config) { c.PrePing = 3 }, "PrePing"},
		{"PrePing never", base, func(c *Config) { c.PrePing = PrePingNever }, ""},
		{"PrePingAfter -1", base, func(c *Config) { c.PrePingAfter = -1 }, "PrePingAfter"},
		{"PrePingAfter 0", base, func(c *Config) { c.PrePingAfter = 0 }, ""},
		{"PingTimeout 0", base, func(c *Config) { c.PingTimeout = 0 }, "PingTimeout"},
		{"ConnectTimeout 0", base, func(c *Config) { c.ConnectTimeout = 0 }, "ConnectTimeout"},
		{"KeepAlive 0", base, func(c *Config) { c.KeepAlive = 0 }, "KeepAlive"},
		{"KeepAlive -1 disables", base, func(c *Config) { c.KeepAlive = -1 }, ""},
		{"HealthCheckPeriod 0", base, func(c *Config) { c.HealthCheckPeriod = 0 }, "HealthCheckPeriod"},
		{"IdleTimeout 0", base, func(c *Config) { c.IdleTimeout = 0 }, "IdleTimeout"},
		{"OverflowIdleTimeout 0", base, func(c *Config) { c.OverflowIdleTimeout = 0 }, ""},
		{"OverflowIdleTimeout -1s", base, func(c *Config) { c.OverflowIdleTimeout = -time.Second }, "OverflowIdleTimeout"},
		{"OverflowIdleTimeout > IdleTimeout", base, func(c *Config) { c.OverflowIdleTimeout = c.IdleTimeout + 1 }, "OverflowIdleTimeout"},
		{"Pooler unknown", base, func(c *Config) { c.Pooler = 2 }, "Pooler"},
		{"Retry invalid", base, func(c *Config) { c.Retry.MaxAttempts = -1 }, "Retry"},
		{"insecure allowed", insecureBase, func(*Config) {}, ""},
		{"insecure no longer allowed", insecureBase, func(c *Config) { c.AllowInsecure = false }, "sslmode"},
		{"cache_describe without pooler", execBase, func(*Config) {}, ""},
		{"cache_describe behind pooler", execBase, func(c *Config) { c.Pooler = PoolerTransaction }, "default_query_exec_mode"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := *tc.base
			tc.edit(&c)
			err := c.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if e := asError(t, err); e.Field != tc.wantField {
				t.Fatalf("Validate() field = %q (%v), want %q", e.Field, err, tc.wantField)
			}
		})
	}
}

func TestValidateRetryErrorUnwraps(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, remote)
	c.Retry.Multiplier = 0.5
	var pe *retry.PolicyError
	if err := c.Validate(); !errors.As(err, &pe) || pe.Field != "Multiplier" {
		t.Fatalf("Validate() = %v, want a wrapped *retry.PolicyError for Multiplier", err)
	}
}

func TestValidateZeroConfig(t *testing.T) {
	t.Parallel()
	var c Config
	if e := asError(t, c.Validate()); e.Field != "Size" {
		t.Fatalf("zero Config: field %q, want Size", e.Field)
	}
}

func TestStringNeverShowsPassword(t *testing.T) {
	testhelp.ClearEnv(t)
	const pw = "Sup3r-S3cret"
	for _, dsn := range []string{
		"postgres://app:" + pw + "@db.example.com/app?sslpassword=" + pw + "x",
		"host=db.example.com user=app password='" + pw + "' dbname=app",
		"host=db.example.com user=app password=" + pw + " dbname=app pool_size=4",
	} {
		c := mustParse(t, dsn)
		outputs := []string{
			c.String(),
			fmt.Sprint(c), fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c),
			fmt.Sprintf("%s", c), fmt.Sprintf("%q", c),
			strings.Join(c.Warnings, "\n"),
		}
		for _, out := range outputs {
			if strings.Contains(out, pw) {
				t.Errorf("output shows the password: %s", out)
			}
		}
		if !strings.Contains(c.String(), "xxxxx") || !strings.Contains(c.String(), "Size=") {
			t.Errorf("String() = %q, want a masked connection string and the options", c.String())
		}
	}
}

func TestStringOptions(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, "postgres://app:pw@ep-x-pooler.eu.aws.neon.tech/app?pool_min_conns=10&pgsteady_keep_channel_binding=true")
	c.LazyStart = true
	got := c.String()
	for _, want := range []string{
		"postgres://app:xxxxx@ep-x-pooler.eu.aws.neon.tech/app?sslmode=require",
		"Size=10", "Overflow=20", "AcquireTimeout=30s", "Recycle=5m0s", "RecycleJitter=30s",
		"PrePing=idle", "PrePingAfter=1s", "PingTimeout=2s", "ConnectTimeout=10s", "KeepAlive=30s",
		"HealthCheckPeriod=30s", "IdleTimeout=2m0s", "OverflowIdleTimeout=30s", "Pooler=transaction",
		"KeepChannelBinding", "LazyStart", "WarmUp",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, lacks %q", got, want)
		}
	}
	if strings.Contains(got, "AllowInsecure") {
		t.Errorf("String() = %q shows AllowInsecure, which is off", got)
	}
	var zero Config
	if !strings.HasPrefix(zero.String(), "(no connection string)") {
		t.Errorf("zero Config String() = %q", zero.String())
	}
}
