package config

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// forms returns the same settings as a URL and as a keyword/value string.
func forms(params ...string) map[string]string {
	q := strings.Join(params, "&")
	kv := strings.Join(params, " ")
	u := "postgres://app:pw@db.example.com:5432/app"
	if q != "" {
		u += "?" + q
	}
	return map[string]string{
		"url": u,
		"kv":  strings.TrimSpace("host=db.example.com port=5432 user=app password=pw dbname=app " + kv),
	}
}

func TestParseKeys(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		name   string
		params []string
		check  func(*Config) bool
	}{
		{"pool_size", []string{"pool_size=4"}, func(c *Config) bool { return c.Size == 4 && c.Overflow == 20 }},
		{"max_overflow", []string{"max_overflow=0"}, func(c *Config) bool { return c.Size == 10 && c.Overflow == 0 }},
		{"size and overflow", []string{"pool_size=2", "max_overflow=3"}, func(c *Config) bool { return c.MaxConns() == 5 }},
		{"pool_max_conns alone, large", []string{"pool_max_conns=50"}, func(c *Config) bool { return c.Size == 10 && c.Overflow == 40 }},
		{"pool_max_conns alone, small", []string{"pool_max_conns=4"}, func(c *Config) bool { return c.Size == 4 && c.Overflow == 0 }},
		{"pool_max_conns with pool_size", []string{"pool_size=5", "pool_max_conns=8"}, func(c *Config) bool { return c.Size == 5 && c.Overflow == 3 }},
		{"pool_max_conns with max_overflow", []string{"max_overflow=5", "pool_max_conns=8"}, func(c *Config) bool { return c.Size == 3 && c.Overflow == 5 }},
		{"all three agree", []string{"pool_size=5", "max_overflow=5", "pool_max_conns=10"}, func(c *Config) bool { return c.MaxConns() == 10 }},
		{"pool_min_conns = size warms up", []string{"pool_size=4", "pool_min_conns=4"}, func(c *Config) bool { return c.WarmUp }},
		{"pool_min_conns 0", []string{"pool_min_conns=0"}, func(c *Config) bool { return !c.WarmUp }},
		{"pool_min_idle_conns 0", []string{"pool_min_idle_conns=0"}, func(c *Config) bool { return !c.WarmUp }},
		{"pool_timeout seconds", []string{"pool_timeout=5"}, func(c *Config) bool { return c.AcquireTimeout == 5*time.Second }},
		{"pool_timeout fraction", []string{"pool_timeout=2.5"}, func(c *Config) bool { return c.AcquireTimeout == 2500*time.Millisecond }},
		{"pool_recycle scales jitter", []string{"pool_recycle=60"}, func(c *Config) bool {
			return c.Recycle == time.Minute && c.RecycleJitter == 6*time.Second
		}},
		{"pool_max_conn_lifetime", []string{"pool_max_conn_lifetime=1h"}, func(c *Config) bool {
			return c.Recycle == time.Hour && c.RecycleJitter == 6*time.Minute
		}},
		{"recycle keys agree", []string{"pool_recycle=120", "pool_max_conn_lifetime=2m"}, func(c *Config) bool { return c.Recycle == 2*time.Minute }},
		{"jitter", []string{"pool_max_conn_lifetime_jitter=5s"}, func(c *Config) bool { return c.RecycleJitter == 5*time.Second }},
		{"jitter 0", []string{"pool_max_conn_lifetime_jitter=0s"}, func(c *Config) bool { return c.RecycleJitter == 0 }},
		{"lifetime and jitter", []string{"pool_recycle=60", "pool_max_conn_lifetime_jitter=1s"}, func(c *Config) bool {
			return c.Recycle == time.Minute && c.RecycleJitter == time.Second
		}},
		{"idle time", []string{"pool_max_conn_idle_time=45s"}, func(c *Config) bool { return c.IdleTimeout == 45*time.Second }},
		{"overflow idle time", []string{"pool_overflow_idle_time=5s"}, func(c *Config) bool { return c.OverflowIdleTimeout == 5*time.Second }},
		{"overflow idle time 0", []string{"pool_overflow_idle_time=0s"}, func(c *Config) bool { return c.OverflowIdleTimeout == 0 }},
		{"health check", []string{"pool_health_check_period=5s"}, func(c *Config) bool { return c.HealthCheckPeriod == 5*time.Second }},
		{"ping timeout", []string{"pool_ping_timeout=500ms"}, func(c *Config) bool { return c.PingTimeout == 500*time.Millisecond }},
		{"pre_ping true is always", []string{"pool_pre_ping=true"}, func(c *Config) bool { return c.PrePing == PrePingAlways }},
		{"pre_ping True is always", []string{"pool_pre_ping=True"}, func(c *Config) bool { return c.PrePing == PrePingAlways }},
		{"pre_ping false is never", []string{"pool_pre_ping=false"}, func(c *Config) bool { return c.PrePing == PrePingNever }},
		{"pre_ping 0 is never", []string{"pool_pre_ping=0"}, func(c *Config) bool { return c.PrePing == PrePingNever }},
		{"pre_ping idle", []string{"pool_pre_ping=idle"}, func(c *Config) bool { return c.PrePing == PrePingIdle }},
		{"pre_ping always", []string{"pool_pre_ping=always"}, func(c *Config) bool { return c.PrePing == PrePingAlways }},
		{"pre_ping never", []string{"pool_pre_ping=never"}, func(c *Config) bool { return c.PrePing == PrePingNever }},
		{"pooler transaction", []string{"pooler=transaction"}, func(c *Config) bool { return c.Pooler == PoolerTransaction }},
		{"pooler session", []string{"pooler=session"}, func(c *Config) bool { return c.Pooler == PoolerNone }},
		{"pooler none", []string{"pooler=none"}, func(c *Config) bool { return c.Pooler == PoolerNone }},
		{"keep channel binding", []string{"pgsteady_keep_channel_binding=true"}, func(c *Config) bool { return c.KeepChannelBinding }},
		{"allow insecure", []string{"pgsteady_allow_insecure=true"}, func(c *Config) bool { return c.AllowInsecure }},
		{"connect_timeout", []string{"connect_timeout=15"}, func(c *Config) bool { return c.ConnectTimeout == 15*time.Second }},
		{"connect_timeout 0 is the default", []string{"connect_timeout=0"}, func(c *Config) bool { return c.ConnectTimeout == DefaultConnectTimeout }},
		{"last occurrence wins", []string{"pool_size=3", "pool_size=7"}, func(c *Config) bool { return c.Size == 7 }},
	}
	for _, tc := range tests {
		for form, dsn := range forms(tc.params...) {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				c := mustParse(t, dsn)
				if !tc.check(c) {
					t.Fatalf("Parse(%q) = %v: check failed", dsn, c)
				}
				checkKeysRemoved(t, c)
			})
		}
	}
}

// checkKeysRemoved checks that none of pgsteady's keys is left in c's connection string.
func checkKeysRemoved(t *testing.T, c *Config) {
	t.Helper()
	for _, k := range keyRules {
		if strings.Contains(c.st.conn, k.key+"=") {
			t.Fatalf("cleaned string %q still holds %s", c.st.conn, k.key)
		}
	}
	pc, err := pgconn.ParseConfig(c.st.conn)
	if err != nil {
		t.Fatalf("cleaned string does not parse: %v", err)
	}
	for k := range pc.RuntimeParams {
		if strings.HasPrefix(k, "pool") || strings.HasPrefix(k, "pgsteady") || k == "max_overflow" {
			t.Fatalf("runtime parameter %q would reach the server", k)
		}
	}
}

func TestParseBadValues(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		param     string
		wantField string
	}{
		{"pool_size=0", "pool_size"},
		{"pool_size=-1", "pool_size"},
		{"pool_size=ten", "pool_size"},
		{"pool_size=99999999999", "pool_size"},
		{"max_overflow=-3", "max_overflow"},
		{"max_overflow=1.5", "max_overflow"},
		{"pool_max_conns=0", "pool_max_conns"},
		{"pool_max_conns=x", "pool_max_conns"},
		{"pool_min_conns=3", "pool_min_conns"},
		{"pool_min_conns=-1", "pool_min_conns"},
		{"pool_min_idle_conns=2", "pool_min_idle_conns"},
		{"pool_min_idle_conns=x", "pool_min_idle_conns"},
		{"pool_timeout=0", "pool_timeout"},
		{"pool_timeout=-5", "pool_timeout"},
		{"pool_timeout=NaN", "pool_timeout"},
		{"pool_timeout=Inf", "pool_timeout"},
		{"pool_timeout=1e300", "pool_timeout"},
		{"pool_timeout=30s", "pool_timeout"},
		{"pool_recycle=-1", "pool_recycle"},
		{"pool_recycle=abc", "pool_recycle"},
		{"pool_max_conn_lifetime=300", "pool_max_conn_lifetime"},
		{"pool_max_conn_lifetime=0s", "pool_max_conn_lifetime"},
		{"pool_max_conn_lifetime=-1m", "pool_max_conn_lifetime"},
		{"pool_max_conn_lifetime_jitter=-1s", "pool_max_conn_lifetime_jitter"},
		{"pool_max_conn_lifetime_jitter=10m", "pool_max_conn_lifetime_jitter"},
		{"pool_max_conn_idle_time=0s", "pool_max_conn_idle_time"},
		{"pool_max_conn_idle_time=soon", "pool_max_conn_idle_time"},
		{"pool_overflow_idle_time=-1s", "pool_overflow_idle_time"},
		{"pool_overflow_idle_time=3m", "OverflowIdleTimeout"},
		{"pool_health_check_period=0s", "pool_health_check_period"},
		{"pool_ping_timeout=0s", "pool_ping_timeout"},
		{"pool_ping_timeout=2", "pool_ping_timeout"},
		{"pool_pre_ping=maybe", "pool_pre_ping"},
		{"pooler=statement", "pooler"},
		{"pgsteady_keep_channel_binding=perhaps", "pgsteady_keep_channel_binding"},
		{"pgsteady_allow_insecure=yes", "pgsteady_allow_insecure"},
		{"channel_binding=sometimes", "channel_binding"},
	}
	for _, tc := range tests {
		for form, dsn := range forms(tc.param) {
			t.Run(tc.param+"/"+form, func(t *testing.T) {
				_, err := Parse(dsn)
				e := asError(t, err)
				if e.Field != tc.wantField {
					t.Fatalf("Parse(%q): field %q (%v), want %q", dsn, e.Field, err, tc.wantField)
				}
				if e.Limit == "" {
					t.Fatalf("Parse(%q): %v names no limit", dsn, err)
				}
				if _, v, _ := strings.Cut(tc.param, "="); !strings.Contains(err.Error(), v) {
					t.Fatalf("Parse(%q): %v does not show the value %q", dsn, err, v)
				}
			})
		}
	}
}

func TestParseContradictions(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		name      string
		params    []string
		wantField string
	}{
		{"max conns vs size+overflow", []string{"pool_size=10", "max_overflow=20", "pool_max_conns=25"}, "pool_max_conns"},
		{"max conns below size", []string{"pool_size=10", "pool_max_conns=5"}, "pool_max_conns"},
		{"max conns not above overflow", []string{"max_overflow=5", "pool_max_conns=5"}, "pool_max_conns"},
		{"recycle vs lifetime", []string{"pool_recycle=300", "pool_max_conn_lifetime=1h"}, "pool_max_conn_lifetime"},
		{"min conns vs size", []string{"pool_size=5", "pool_min_conns=10"}, "pool_min_conns"},
		{"pooler vs exec mode", []string{"pooler=transaction", "default_query_exec_mode=cache_statement"}, "default_query_exec_mode"},
		{"pooler vs describe_exec", []string{"pooler=transaction", "default_query_exec_mode=describe_exec"}, "default_query_exec_mode"},
	}
	for _, tc := range tests {
		for form, dsn := range forms(tc.params...) {
			t.Run(tc.name+"/"+form, func(t *testing.T) {
				_, err := Parse(dsn)
				if e := asError(t, err); e.Field != tc.wantField {
					t.Fatalf("Parse(%q): field %q (%v), want %q", dsn, e.Field, err, tc.wantField)
				}
			})
		}
	}
}

func TestParseKeyRemovalRespectsQuoting(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		name     string
		dsn      string
		wantSize int
		wantPW   string
		wantApp  string
	}{
		{
			name:     "quoted password holding a pool key",
			dsn:      `host=db.example.com user=app password='a b pool_size=99' pool_size=5 application_name='x y'`,
			wantSize: 5, wantPW: "a b pool_size=99", wantApp: "x y",
		},
		{
			name:     "escaped quote and backslash",
			dsn:      `host=db.example.com user=app password='it\'s \\ pool_size=2' application_name=a\ b pool_size = 6`,
			wantSize: 6, wantPW: `it's \ pool_size=2`, wantApp: "a b",
		},
		{
			name:     "key with spaces around =",
			dsn:      "host=db.example.com user=app password=pw   pool_size =\t3  application_name=z",
			wantSize: 3, wantPW: "pw", wantApp: "z",
		},
		{
			name:     "empty value swallows the next pair, as in libpq",
			dsn:      "host=db.example.com user=app password=pw application_name= pool_size=4",
			wantSize: DefaultSize, wantPW: "pw", wantApp: "pool_size=4",
		},
		{
			name:     "URL with percent-encoded key and value",
			dsn:      "postgres://app:p%40ss%26pool_size%3D9@db.example.com/app?pool%5Fsize=%34&application_name=a%20b",
			wantSize: 4, wantPW: "p@ss&pool_size=9", wantApp: "a b",
		},
		{
			name:     "URL password with ? and pool key",
			dsn:      "postgres://app:x?pool_size=8@db.example.com/app?pool_size=2",
			wantSize: 2, wantPW: "x?pool_size=8",
		},
		{
			name:     "URL without path",
			dsn:      "postgres://app:pw@db.example.com:5432?pool_size=3&application_name=q",
			wantSize: 3, wantPW: "pw", wantApp: "q",
		},
		{
			name:     "URL IPv6 host",
			dsn:      "postgres://app:pw@[2001:db8::1]:5432/app?pool_size=3",
			wantSize: 3, wantPW: "pw",
		},
		{
			name:     "URL multi-host",
			dsn:      "postgres://app:pw@a.example.com:5432,b.example.com:5433/app?pool_size=3&target_session_attrs=read-write",
			wantSize: 3, wantPW: "pw",
		},
		{
			name:     "postgresql scheme, only pool keys",
			dsn:      "postgresql://app:pw@db.example.com/app?pool_size=3&max_overflow=1",
			wantSize: 3, wantPW: "pw",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.dsn)
			if c.Size != tc.wantSize {
				t.Errorf("Size = %d, want %d", c.Size, tc.wantSize)
			}
			pc, err := pgconn.ParseConfig(c.st.conn)
			if err != nil {
				t.Fatalf("cleaned string %q: %v", c.st.conn, err)
			}
			if pc.Password != tc.wantPW {
				t.Errorf("password = %q, want %q", pc.Password, tc.wantPW)
			}
			if got := pc.RuntimeParams["application_name"]; got != tc.wantApp {
				t.Errorf("application_name = %q, want %q", got, tc.wantApp)
			}
			if _, ok := pc.RuntimeParams["pool_size"]; ok {
				t.Errorf("pool_size reaches the server")
			}
		})
	}
}

func TestParseSSLMode(t *testing.T) {
	tests := []struct {
		name        string
		dsn         string
		env         map[string]string
		wantErr     bool   // an *Error for sslmode
		wantMode    string // the insecure mode reported
		wantAdded   bool   // sslmode=require added
		wantAllTLS  bool   // every attempt uses TLS
		wantNoTLSOK bool   // plaintext attempts accepted (local or allowed)
	}{
		{name: "remote, absent: require", dsn: "postgres://u:pw@db.example.com/d", wantAdded: true, wantAllTLS: true},
		{name: "remote kv, absent: require", dsn: "host=db.example.com user=u password=pw", wantAdded: true, wantAllTLS: true},
		{name: "remote, require kept", dsn: "postgres://u:pw@db.example.com/d?sslmode=require", wantAllTLS: true},
		{name: "remote, verify-full kept", dsn: "host=db.example.com user=u sslmode=verify-full", wantAllTLS: true},
		{name: "remote, ssl=true alias", dsn: "postgres://u:pw@db.example.com/d?ssl=true", wantAllTLS: true},
		{name: "remote, disable", dsn: "postgres://u:pw@db.example.com/d?sslmode=disable", wantErr: true, wantMode: "disable"},
		{name: "remote, allow", dsn: "postgres://u:pw@db.example.com/d?sslmode=allow", wantErr: true, wantMode: "allow"},
		{name: "remote, prefer", dsn: "host=db.example.com sslmode=prefer", wantErr: true, wantMode: "prefer"},
		{name: "remote, disable allowed", dsn: "postgres://u:pw@db.example.com/d?sslmode=disable&pgsteady_allow_insecure=true", wantNoTLSOK: true},
		{name: "remote, PGSSLMODE=disable", dsn: "postgres://u:pw@db.example.com/d", env: map[string]string{"PGSSLMODE": "disable"}, wantErr: true, wantMode: "disable"},
		{name: "remote, PGSSLMODE=verify-ca", dsn: "postgres://u:pw@db.example.com/d", env: map[string]string{"PGSSLMODE": "verify-ca", "PGSSLROOTCERT": "system"}, wantAllTLS: true},
		{name: "PGHOST remote, empty string", dsn: "", env: map[string]string{"PGHOST": "db.example.com", "PGUSER": "u"}, wantAdded: true, wantAllTLS: true},
		{name: "multi-host, one remote", dsn: "postgres://u:pw@127.0.0.1,db.example.com/d", wantAdded: true, wantAllTLS: true},
		{name: "multi-host, remote disable", dsn: "postgres://u:pw@127.0.0.1,db.example.com/d?sslmode=disable", wantErr: true, wantMode: "disable"},
		{name: "loopback v4", dsn: "postgres://u:pw@127.0.0.1/d", wantNoTLSOK: true},
		{name: "loopback v4 range", dsn: "postgres://u:pw@127.1.2.3/d?sslmode=disable", wantNoTLSOK: true},
		{name: "loopback v6", dsn: "postgres://u:pw@[::1]:5432/d?sslmode=disable", wantNoTLSOK: true},
		{name: "localhost", dsn: "host=localhost user=u sslmode=disable", wantNoTLSOK: true},
		{name: "unix socket", dsn: "host=/var/run/postgresql user=u", wantNoTLSOK: true},
		{name: "private address is not local", dsn: "host=10.0.0.5 user=u sslmode=disable", wantErr: true, wantMode: "disable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.ClearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Parse(tc.dsn)
			if tc.wantErr {
				e := asError(t, err)
				if e.Field != "sslmode" || e.Value != tc.wantMode {
					t.Fatalf("Parse(%q) = %v, want an sslmode error for %q", tc.dsn, err, tc.wantMode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.dsn, err)
			}
			if got := strings.Contains(c.st.conn, "sslmode=require"); got != tc.wantAdded && !strings.Contains(tc.dsn, "sslmode=require") {
				t.Errorf("sslmode=require added = %v, want %v (%q)", got, tc.wantAdded, c.st.conn)
			}
			if tc.wantAllTLS && !allTLS(t, c) {
				t.Errorf("some attempt goes without TLS")
			}
			if !tc.wantAllTLS && !tc.wantNoTLSOK {
				t.Errorf("bad test case")
			}
		})
	}
}

// allTLS reports whether every attempt of c's pgx configuration uses TLS.
func allTLS(t *testing.T, c *Config) bool {
	t.Helper()
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	all := pc.ConnConfig.TLSConfig != nil
	for _, f := range pc.ConnConfig.Fallbacks {
		all = all && f.TLSConfig != nil
	}
	return all
}

func TestParsePooler(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		want PoolerMode
	}{
		{"neon pooler host", "postgres://u:pw@ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech/neondb?sslmode=require", PoolerTransaction},
		{"neon pooler host, upper case", "host=EP-X-POOLER.EU-CENTRAL-1.AWS.NEON.TECH user=u", PoolerTransaction},
		{"neon direct host", "postgres://u:pw@ep-patient-lake-a816cbtn.eastus2.azure.neon.tech/neondb", PoolerNone},
		{"pooler host, pooler=none", "postgres://u:pw@ep-x-pooler.eu.aws.neon.tech/d?pooler=none", PoolerNone},
		{"pooler=transaction", "host=pgbouncer.internal user=u pooler=transaction", PoolerTransaction},
		{"-pooler without dot", "host=my-pooler user=u sslmode=require", PoolerNone},
		{"pooler + exec mode exec", "host=h.example.com user=u pooler=transaction default_query_exec_mode=exec", PoolerTransaction},
		{"supabase transaction pooler", "postgres://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres", PoolerTransaction},
		{"supabase pooler, upper case and trailing dot", "host=AWS-0-US-EAST-1.POOLER.SUPABASE.COM. port=6543 user=u", PoolerTransaction},
		{"supabase session pooler (port 5432)", "postgres://postgres.abcd:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres", PoolerNone},
		{"supabase direct host on 6543", "postgres://u:pw@db.abcd.supabase.co:6543/postgres", PoolerNone},
		{"supabase pooler, pooler=session", "postgres://u:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres?pooler=session", PoolerNone},
		{"supabase pooler, second host", "postgres://u:pw@db.example.com,aws-0-eu-central-1.pooler.supabase.com:6543/postgres", PoolerTransaction},
		{"pooler + simple protocol", "host=h.example.com user=u pooler=transaction default_query_exec_mode=simple_protocol", PoolerTransaction},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.ClearEnv(t)
			if c := mustParse(t, tc.dsn); c.Pooler != tc.want {
				t.Fatalf("Pooler = %v, want %v", c.Pooler, tc.want)
			}
		})
	}
}

func TestParseChannelBinding(t *testing.T) {
	testhelp.ClearEnv(t)
	const neon = "postgresql://neondb_owner:npg_S3cret@ep-x-pooler.eastus2.azure.neon.tech/neondb?sslmode=require&channel_binding=require"

	c := mustParse(t, neon)
	if strings.Contains(c.st.conn, "channel_binding") {
		t.Errorf("channel_binding still in %q", c.st.conn)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "channel_binding=require removed") ||
		!strings.Contains(c.Warnings[0], "pgsteady_keep_channel_binding=true") {
		t.Errorf("Warnings = %q, want one saying channel_binding was removed and how to keep it", c.Warnings)
	}
	if strings.Contains(c.Warnings[0], "npg_S3cret") {
		t.Errorf("warning shows the password: %s", c.Warnings[0])
	}
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := pc.ConnConfig.ChannelBinding; got != "prefer" {
		t.Errorf("ChannelBinding = %q, want pgx's default prefer", got)
	}

	// Kept after Parse: PgxPoolConfig applies the value Parse set aside.
	c.KeepChannelBinding = true
	if pc, err = c.PgxPoolConfig(); err != nil {
		t.Fatal(err)
	}
	if got := pc.ConnConfig.ChannelBinding; got != "require" {
		t.Errorf("kept after Parse: ChannelBinding = %q, want require", got)
	}

	// Kept by the connection string: no warning.
	c = mustParse(t, neon+"&pgsteady_keep_channel_binding=true")
	if len(c.Warnings) != 0 || !c.KeepChannelBinding {
		t.Errorf("kept: Warnings = %q, KeepChannelBinding = %v", c.Warnings, c.KeepChannelBinding)
	}
	if pc, err = c.PgxPoolConfig(); err != nil {
		t.Fatal(err)
	}
	if got := pc.ConnConfig.ChannelBinding; got != "require" {
		t.Errorf("kept: ChannelBinding = %q, want require", got)
	}
}

func TestParseConnectTimeoutFromEnv(t *testing.T) {
	testhelp.ClearEnv(t)
	t.Setenv("PGCONNECT_TIMEOUT", "12")
	if c := mustParse(t, remote); c.ConnectTimeout != 12*time.Second {
		t.Fatalf("ConnectTimeout = %v, want 12s from PGCONNECT_TIMEOUT", c.ConnectTimeout)
	}
	if c := mustParse(t, remote+"?connect_timeout=3"); c.ConnectTimeout != 3*time.Second {
		t.Fatalf("ConnectTimeout = %v, want 3s from the connection string", c.ConnectTimeout)
	}
}

func TestParseEmptyUsesPGEnv(t *testing.T) {
	testhelp.ClearEnv(t)
	t.Setenv("PGHOST", "db.example.com")
	t.Setenv("PGPORT", "6543")
	t.Setenv("PGUSER", "envuser")
	t.Setenv("PGPASSWORD", "envSecret")
	t.Setenv("PGDATABASE", "envdb")
	c := mustParse(t, "")
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	cc := pc.ConnConfig
	if cc.Host != "db.example.com" || cc.Port != 6543 || cc.User != "envuser" || cc.Password != "envSecret" || cc.Database != "envdb" {
		t.Fatalf("got %s:%d user=%s db=%s", cc.Host, cc.Port, cc.User, cc.Database)
	}
	if strings.Contains(c.String(), "envSecret") {
		t.Fatalf("String() shows PGPASSWORD: %s", c)
	}
}

func TestParseErrorsHideThePassword(t *testing.T) {
	testhelp.ClearEnv(t)
	const pw = "Hunter2-secret"
	tests := []string{
		"postgres://app:" + pw + "@db.example.com:notaport/app",
		"postgres://app:" + pw + "@db.example.com/app?sslmode=bogus",
		"postgres://app:" + pw + "@db.example.com/app?pool_size=0",
		"postgres://app:" + pw + "@db.example.com/app?sslmode=disable",
		"postgres://app:" + pw + "@db.example.com/app?a=b=c",
		"postgres://app:" + pw + "@db.example.com/app?x=%zz",
		"postgres://app:" + pw + "@[::1/app",
		"postgres://app:" + url.QueryEscape(pw) + "%zz@db.example.com/app",
		"host=db.example.com password=" + pw + " port=abc",
		"host=db.example.com password='" + pw + " port=5432",
		"host=db.example.com password=" + pw + " target_session_attrs=" + pw,
		"host=db.example.com password=" + pw + " broken",
		"host=db.example.com password=" + pw + " pool_size=" + pw,
		"host=db.example.com password=" + pw + " channel_binding=" + pw,
		"host=db.example.com password=" + pw + " default_query_exec_mode=" + pw,
		"host=db.example.com password=" + pw + " min_protocol_version=" + pw,
		"host=db.example.com sslpassword=" + pw + " sslmode=nope",
		"host=db.example.com password=" + pw + " sslrootcert=/nonexistent/" + pw,
		"host=db.example.com pass word=" + pw,
		"host=db.example.com password=" + pw + "\x00",
	}
	for _, dsn := range tests {
		t.Run(dsn, func(t *testing.T) {
			_, err := Parse(dsn)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded", dsn)
			}
			e := asError(t, err)
			t.Log(err)
			for _, s := range []string{err.Error(), e.Field, e.Value, e.Limit} {
				if strings.Contains(s, pw) {
					t.Fatalf("error shows the password: %v", err)
				}
			}
			var pce *pgconn.ParseConfigError
			if errorsAs(err, &pce) {
				t.Fatalf("error chain holds a *pgconn.ParseConfigError with the raw string")
			}
		})
	}
}

// A password pasted with a raw '@' (or '@' and ':') is cut at the first '@' by libpq and pgx,
// and the rest of it is read as the host. Parse refuses such a URL, and its error masks the
// whole password, not only the part before the first '@'.
func TestParseRawAtInUserinfo(t *testing.T) {
	testhelp.ClearEnv(t)
	const tail = "Hunter2-secret"
	tests := []struct {
		name, dsn, password string
	}{
		{"raw @ in password", "postgres://app:p@" + tail + "@db.example.com/app", "p@" + tail},
		{"raw @ in password, sslmode disable", "postgres://app:p@" + tail + "@db.example.com/app?sslmode=disable", "p@" + tail},
		{"raw @ and : in password", "postgres://app:p@ss:" + tail + "@db.example.com:5432/app", "p@ss:" + tail},
		{"two raw @ in password", "postgres://app:p@x@" + tail + "@db.example.com/app?pool_size=3", "p@x@" + tail},
		{"user@server form (old Azure)", "postgres://app@myserver:" + tail + "@db.example.com/app", tail},
		{"postgresql scheme, multi-host", "postgresql://app:p@" + tail + "@a.example.com,b.example.com/app", "p@" + tail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.dsn)
			if err == nil {
				t.Fatalf("Parse(%q) succeeded; pgx would read part of the password as the host", tc.dsn)
			}
			e := asError(t, err)
			if e.Field != "connection string" || e.Limit == "" {
				t.Errorf("error %v: want Field %q and a Limit", err, "connection string")
			}
			for _, s := range []string{err.Error(), e.Value, e.Limit} {
				if strings.Contains(s, tail) || strings.Contains(s, tc.password) {
					t.Fatalf("error shows the password (or its tail): %v", err)
				}
			}
			if e.Value != "" {
				t.Errorf("error %v quotes the string", err)
			}
		})
	}
}

// A '@' after the host list, in the query of a URL without a path, is not part of the
// userinfo: pgx reads such a URL as before.
func TestParseAtInQueryIsNotUserinfo(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, "postgres://app:pw@db.example.com:5432?application_name=a@b")
	pc, err := pgconn.ParseConfig(c.st.conn)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Host != "db.example.com" || pc.Password != "pw" || pc.RuntimeParams["application_name"] != "a@b" {
		t.Fatalf("host %q application_name %q", pc.Host, pc.RuntimeParams["application_name"])
	}
}

// A URL written for SQLAlchemy names the Python driver in its scheme. Parse reads it as
// postgresql:// and says so in a warning.
func TestParseSQLAlchemyScheme(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		dsn, driver string
	}{
		{"postgresql+psycopg2://app:S3cret-pw@db.example.com:5432/app?pool_size=4", "psycopg2"},
		{"postgresql+psycopg://app:S3cret-pw@db.example.com:5432/app?pool_size=4", "psycopg"},
		{"postgresql+asyncpg://app:S3cret-pw@db.example.com:5432/app?pool_size=4", "asyncpg"},
		{"postgresql+pg8000://app:S3cret-pw@db.example.com:5432/app?pool_size=4", "pg8000"},
	}
	for _, tc := range tests {
		t.Run(tc.driver, func(t *testing.T) {
			c := mustParse(t, tc.dsn)
			if !strings.HasPrefix(c.st.conn, "postgresql://") {
				t.Errorf("cleaned string %q does not start with postgresql://", c.st.shown)
			}
			if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "+"+tc.driver) {
				t.Errorf("Warnings = %q, want one naming +%s", c.Warnings, tc.driver)
			}
			pc, err := c.PgxPoolConfig()
			if err != nil {
				t.Fatal(err)
			}
			cc := pc.ConnConfig
			if cc.Host != "db.example.com" || cc.User != "app" || cc.Password != "S3cret-pw" || c.Size != 4 {
				t.Errorf("host %q user %q size %d (password ok: %v)", cc.Host, cc.User, c.Size, cc.Password == "S3cret-pw")
			}
		})
	}
}

func TestParseSQLAlchemySchemeErrorsHideThePassword(t *testing.T) {
	testhelp.ClearEnv(t)
	const pw = "Hunter2-secret"
	for _, dsn := range []string{
		"postgresql+psycopg2://app:" + pw + "@db.example.com:bad/app",
		"postgresql+asyncpg://app:" + pw + "@db.example.com/app?pool_size=0",
		"postgresql+psycopg://app:p@" + pw + "@db.example.com/app",
	} {
		_, err := Parse(dsn)
		if err == nil {
			t.Fatalf("Parse(%q) succeeded", dsn)
		}
		asError(t, err)
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// Only a driver name (lower-case letters, digits, '_') after "postgresql+" or "postgres+" is
// dropped: other strings are refused.
func TestParseSQLAlchemySchemeOnlyDriverNames(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, dsn := range []string{
		"postgresql+://app:pw@db.example.com/app",
		"postgresql+Psycopg2://app:pw@db.example.com/app",
		"postgresql+a b://app:pw@db.example.com/app",
		"mysql+pymysql://app:pw@db.example.com/app",
	} {
		if _, err := Parse(dsn); err == nil {
			t.Errorf("Parse(%q) succeeded", dsn)
		}
	}
}

// asyncpg takes the sslmode as ssl=...; in a SQLAlchemy URL Parse reads it as sslmode.
func TestParseSQLAlchemyAsyncpgSSL(t *testing.T) {
	testhelp.ClearEnv(t)
	tests := []struct {
		dsn         string
		wantSSLMode string // "" when ssl is not rewritten
		wantErr     bool
	}{
		{"postgresql+asyncpg://u:pw@db.example.com/d?ssl=require", "require", false},
		{"postgresql+asyncpg://u:pw@db.example.com/d?ssl=verify-full&sslrootcert=system", "verify-full", false},
		{"postgresql+asyncpg://u:pw@127.0.0.1/d?ssl=disable", "disable", false},
		{"postgresql+asyncpg://u:pw@db.example.com/d?ssl=disable", "", true},                                        // plaintext to a remote host
		{"postgresql+asyncpg://u:pw@db.example.com/d?ssl=true", "", false},                                          // pgx's alias, left alone
		{"postgresql+asyncpg://u:pw@db.example.com/d?ssl=require&sslmode=verify-full&sslrootcert=system", "", true}, // pgx would send ssl to the server
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			c, err := Parse(tc.dsn)
			if tc.wantErr {
				if e := asError(t, err); e.Field != "sslmode" && e.Field != "ssl" {
					t.Fatalf("Parse = %v, want an sslmode error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantSSLMode == "" {
				if len(c.Warnings) != 1 {
					t.Errorf("Warnings = %q, want only the driver's", c.Warnings)
				}
				return
			}
			d, _ := parseDSN(c.st.conn)
			if v, _ := d.lookup("sslmode"); v != tc.wantSSLMode || d.has("ssl") {
				t.Errorf("cleaned string %q: want sslmode=%s and no ssl", c.st.shown, tc.wantSSLMode)
			}
			if len(c.Warnings) != 2 || !strings.Contains(c.Warnings[1], "sslmode="+tc.wantSSLMode) {
				t.Errorf("Warnings = %q, want the driver's and one about ssl", c.Warnings)
			}
		})
	}
	// In a plain postgres:// URL too (asyncpg's and node-postgres's spelling): pgx would
	// send ssl=require to the server, which refuses it.
	c, err := Parse("postgresql://u:pw@127.0.0.1/d?ssl=require")
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := parseDSN(c.st.conn); d.has("ssl") || !d.has("sslmode") {
		t.Errorf("plain URL not rewritten: %q", c.st.shown)
	}
}
