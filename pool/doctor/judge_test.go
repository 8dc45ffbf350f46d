package doctor

import (
	"strings"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
)

func parse(t *testing.T, dsn string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// levelOf returns the level of the one finding id in d, or "" when there is none.
func levelOf(t *testing.T, d *diagnosis, id string) Level {
	t.Helper()
	fs := d.r.Find(id)
	if len(fs) > 1 {
		t.Fatalf("%d findings %s", len(fs), id)
	}
	if len(fs) == 0 {
		return ""
	}
	return fs[0].Level
}

func TestJudgeIdleSession(t *testing.T) {
	t.Parallel()
	const base = "postgres://u:p@127.0.0.1/db"
	tests := []struct {
		name       string
		dsn        string
		timeout    time.Duration
		want       Level
		wantAdvice bool
	}{
		{"off", base, 0, OK, false},
		{"long", base, time.Hour, OK, false},
		{"short, pre-ping catches", base, 60 * time.Second, Warn, true},
		{"short, no pre-ping", base + "?pool_pre_ping=false", 60 * time.Second, Fail, true},
		{"idle time below it", base + "?pool_max_conn_idle_time=20s&pool_health_check_period=10s", 60 * time.Second, OK, false},
		{"warm pool lives longer", base + "?pool_max_conn_idle_time=20s&pool_health_check_period=10s&pool_min_conns=10", 60 * time.Second, Warn, true},
		{"recycle bounds it", base + "?pool_recycle=30&pool_max_conn_lifetime_jitter=5s", 60 * time.Second, OK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &diagnosis{}
			judgeIdleSession(parse(t, tt.dsn), tt.timeout, d)
			if got := levelOf(t, d, IDIdleSession); got != tt.want {
				t.Errorf("level %q, want %q: %v", got, tt.want, d.r.Findings)
			}
			if got := len(d.r.Advice) > 0; got != tt.wantAdvice {
				t.Errorf("advice %v, want some: %v", d.r.Advice, tt.wantAdvice)
			}
		})
	}
}

func TestJudgeMaxConns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		replicas int
		max, res int
		inUse    int
		pooler   string
		want     Level
	}{
		{"fits", 1, 100, 3, 1, "none seen", OK},
		{"seed's example", 8, 104, 3, 1, "none seen", Fail},
		{"tight with others", 3, 100, 3, 20, "none seen", Warn},
		{"behind a pooler", 8, 104, 3, 1, "transaction", OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &diagnosis{}
			s := &serverFacts{Server: &Server{MaxConnections: tt.max, Reserved: tt.res, InUse: tt.inUse, Pooler: tt.pooler}}
			judgeMaxConns(parse(t, "postgres://u:p@127.0.0.1/db"), s, tt.replicas, d)
			if got := levelOf(t, d, IDMaxConnections); got != tt.want {
				t.Errorf("level %q, want %q: %v", got, tt.want, d.r.Findings)
			}
		})
	}
}

func TestJudgeRole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		recovery, ro    bool
		source          string
		standby, roWant Level
		advice          bool
	}{
		{"primary", false, false, "", OK, OK, false},
		{"standby", true, false, "", Warn, OK, false},
		{"read-only role", false, true, "user", OK, Warn, true},
		{"read-only database", false, true, "database", OK, Warn, true},
		{"fenced server", false, true, "configuration file", OK, Warn, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &diagnosis{}
			judgeRole(&serverFacts{Server: &Server{InRecovery: tt.recovery, ReadOnly: tt.ro, ReadOnlySource: tt.source}}, d)
			if got := levelOf(t, d, IDStandby); got != tt.standby {
				t.Errorf("standby %q, want %q", got, tt.standby)
			}
			if got := levelOf(t, d, IDReadOnly); got != tt.roWant {
				t.Errorf("read-only %q, want %q", got, tt.roWant)
			}
			if got := len(d.r.Advice) > 0; got != tt.advice {
				t.Errorf("advice %v, want some: %v", d.r.Advice, tt.advice)
			}
		})
	}
}

func TestJudgePooler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dsn, seen string
		want            Level
	}{
		{"direct", "postgres://u:p@127.0.0.1/db", "none seen", OK},
		{"pooler not configured", "postgres://u:p@127.0.0.1/db", "transaction", Fail},
		{"pooler configured", "postgres://u:p@127.0.0.1/db?pooler=transaction", "transaction", OK},
		{"neon pooler by name", "postgres://u:p@ep-x-pooler.eu-central-1.aws.neon.tech/db", "transaction", OK},
		{"not checked", "postgres://u:p@127.0.0.1/db", "", Warn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := &diagnosis{}
			judgePooler(parse(t, tt.dsn), &serverFacts{Server: &Server{Pooler: tt.seen}}, d)
			if got := levelOf(t, d, IDPoolerBehaviour); got != tt.want {
				t.Errorf("level %q, want %q: %v", got, tt.want, d.r.Findings)
			}
		})
	}
}

func TestJudgeKeepAlive(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		keepAlive time.Duration
		want      Level
	}{{config.DefaultKeepAlive, OK}, {-1, Warn}, {5 * time.Minute, Warn}} {
		cfg := parse(t, "postgres://u:p@127.0.0.1/db")
		cfg.KeepAlive = tt.keepAlive
		d := &diagnosis{}
		judgeKeepAlive(cfg, d)
		if got := levelOf(t, d, IDKeepAlive); got != tt.want {
			t.Errorf("KeepAlive %v: level %q, want %q", tt.keepAlive, got, tt.want)
		}
	}
}

func TestReadConnString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dsn   string
		sslmode     string
		sslLevel    Level
		warnings    int
		poolerFound bool
	}{
		{"local require", "postgres://u:secret@127.0.0.1/db?sslmode=require", "require", OK, 0, false},
		{"remote require", "postgres://u:secret@db.example.com/db?sslmode=require", "require", Warn, 0, false},
		{"remote default is require", "postgres://u:secret@db.example.com/db", "require", Warn, 0, false},
		{"verify-full", "postgres://u:secret@db.example.com/db?sslmode=verify-full", "verify-full", OK, 0, false},
		{"verify-ca", "postgres://u:secret@db.example.com/db?sslmode=verify-ca", "verify-ca", Warn, 0, false},
		{"local disable", "postgres://u:secret@localhost/db?sslmode=disable", "disable", OK, 0, false},
		{"remote prefer allowed", "postgres://u:secret@db.example.com/db?sslmode=prefer&pgsteady_allow_insecure=true", "prefer", Warn, 0, false},
		{"remote allow", "postgres://u:secret@db.example.com/db?sslmode=allow&pgsteady_allow_insecure=true", "allow", Warn, 0, false},
		{"remote disable", "postgres://u:secret@db.example.com/db?sslmode=disable&pgsteady_allow_insecure=true", "disable", Fail, 0, false},
		{"neon pooler, channel_binding, sqlalchemy", "postgresql+psycopg2://u:secret@ep-x-pooler.us-east-2.aws.neon.tech/db?sslmode=require&channel_binding=require",
			"require", Warn, 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := parse(t, tt.dsn)
			pc, err := cfg.PgxPoolConfig()
			if err != nil {
				t.Fatal(err)
			}
			d := &diagnosis{}
			readConnString(cfg, &pc.ConnConfig.Config, d)
			cs := d.r.ConnString
			if cs.SSLMode != tt.sslmode {
				t.Errorf("sslmode %q, want %q", cs.SSLMode, tt.sslmode)
			}
			if got := levelOf(t, d, IDConnSSLMode); got != tt.sslLevel {
				t.Errorf("sslmode level %q, want %q", got, tt.sslLevel)
			}
			if got := len(d.r.Find(IDConnWarning)); got != tt.warnings {
				t.Errorf("%d warnings, want %d: %v", got, tt.warnings, cs.Warnings)
			}
			if got := len(d.r.Find(IDConnPooler)) == 1; got != tt.poolerFound {
				t.Errorf("pooler finding %v, want %v", got, tt.poolerFound)
			}
			if cs.Masked == "" || strings.Contains(cs.Masked, "secret") || strings.Contains(cs.Masked, "Size=") {
				t.Errorf("masked connection string %q", cs.Masked)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{{nil, 0}, {[]time.Duration{3}, 3}, {[]time.Duration{5, 1, 3}, 3}, {[]time.Duration{4, 1, 3, 2}, 3}} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
