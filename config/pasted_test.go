package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// pastedSecrets are the password fragments used in TestPasted: none may appear in any output.
var pastedSecrets = []string{"S3cretPW", "Tok3nX", "horse", "QZa", "QZb", "QZc", "QZd", "cret/P"}

// outputs returns every text a user may see of c and err: the error, and c under every
// formatting verb, String, GoString, slog and JSON, and its warnings.
func outputs(t *testing.T, c *Config, err error) []string {
	t.Helper()
	var out []string
	if err != nil {
		out = append(out, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err))
		var e *Error
		if errors.As(err, &e) {
			out = append(out, e.Field, e.Value, e.Limit)
		}
	}
	if c == nil {
		return out
	}
	js, jerr := json.Marshal(c)
	if jerr != nil {
		t.Fatalf("json.Marshal: %v", jerr)
	}
	jsv, _ := json.Marshal(*c)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("cfg", "config", c)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("cfg", "config", *c)
	out = append(out, c.String(), c.GoString(), string(js), string(jsv), logged.String(),
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c),
		fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c), fmt.Sprintf("%q", c),
		fmt.Sprint(c), fmt.Sprint(*c), strings.Join(c.Warnings, "\n"))
	return out
}

// checkNoSecret fails when any output holds one of the secrets.
func checkNoSecret(t *testing.T, outs []string, secrets ...string) {
	t.Helper()
	for _, o := range outs {
		for _, s := range secrets {
			if strings.Contains(o, s) {
				t.Fatalf("output shows %q: %s", s, o)
			}
		}
	}
}

// TestPasted holds every example of issue 23: connection strings and environments as
// service authors paste them, with what Parse or FromEnv now makes of them.
func TestPasted(t *testing.T) {
	const host = "db.example.com"
	tests := []struct {
		name      string
		dsn       string            // given to Parse, unless env is set
		env       map[string]string // given to FromEnv
		wantErr   error             // a sentinel the error must match, or nil
		wantField string            // the *Error's Field, when an error is expected
		wantHint  string            // text the error must hold (the fix it names)
		wantWarn  string            // text one warning must hold
		check     func(t *testing.T, c *Config)
	}{
		{
			name:     "ADO.NET / Npgsql",
			dsn:      "Server=db.example.com;Port=5432;Database=app;User Id=app;Password=S3cretPW;SSL Mode=Require",
			wantWarn: "ADO.NET",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     "Npgsql Host and Username, quoted password with ;",
			dsn:      `Host=db.example.com;Username=app;Password="S3cretPW;x";Database=app;SSL Mode=VerifyFull;Trust Server Certificate=false`,
			wantWarn: "ADO.NET",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW;x", true),
		},
		{
			name:      "ADO.NET password with a raw ;",
			dsn:       "Server=db.example.com;Database=app;User Id=app;Password=S3cretPW;horse;SSL Mode=Require",
			wantErr:   ErrFormat,
			wantField: "Password",
		},
		{
			name:     "JDBC",
			dsn:      "jdbc:postgresql://db.example.com:5432/app?user=app&password=S3cretPW",
			wantWarn: "JDBC",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:      "JDBC for another database",
			dsn:       "jdbc:mysql://db.example.com:3306/app?user=app&password=S3cretPW",
			wantErr:   ErrFormat,
			wantField: "connection string",
		},
		{
			name:      "keyword/value password with spaces, unquoted",
			dsn:       "host=db.example.com user=app password=Tok3nX horse S3cretPW",
			wantField: "password",
			wantHint:  "quote",
		},
		{
			name:      "keyword/value password with spaces, next word has =",
			dsn:       "host=db.example.com user=app password=Tok3nX horse=S3cretPW",
			wantErr:   ErrUnknownKey,
			wantField: "password",
			wantHint:  "quote",
		},
		{
			name:      "URL pasted into DB_HOST",
			env:       map[string]string{"DB_HOST": "postgres://app:S3cretPW@db.example.com/app", "DB_USER": "app", "DB_PASSWORD": "x", "DB_NAME": "app"},
			wantErr:   ErrFormat,
			wantField: "DB_HOST",
			wantHint:  "DATABASE_URL",
		},
		{
			name:      "URL password with raw @ then :",
			dsn:       "postgres://app:QZa@QZb:QZc@db.example.com:5432/app",
			wantField: "connection string",
			wantHint:  "%40",
		},
		{
			name:      "URL password with raw @, : and /",
			dsn:       "postgres://app:QZa@QZb:QZc/QZd@db.example.com:5432/app",
			wantErr:   ErrFormat,
			wantField: "connection string",
			wantHint:  "%2F",
		},
		{
			name:      "URL password with a raw /",
			dsn:       "postgres://app:S3cret/PW@db.example.com:5432/app",
			wantErr:   ErrFormat,
			wantField: "connection string",
			wantHint:  "%2F",
		},
		{
			name:      "max_overflows",
			dsn:       "postgres://app:S3cretPW@db.example.com/app?max_overflows=5",
			wantErr:   ErrUnknownKey,
			wantField: "max_overflows",
			wantHint:  "max_overflow?",
		},
		{
			name:      "sslmod",
			dsn:       "host=db.example.com user=app password=S3cretPW sslmod=require",
			wantErr:   ErrUnknownKey,
			wantField: "password", // the key after it could be the rest of the password
			wantHint:  "sslmode?",
		},
		{
			name:      "pool_sise",
			dsn:       "postgres://app:S3cretPW@db.example.com/app?pool_sise=5",
			wantErr:   ErrUnknownKey,
			wantField: "pool_sise",
			wantHint:  "pool_size?",
		},
		{
			name:     "Prisma pgbouncer and connection_limit",
			dsn:      "postgresql://app:S3cretPW@db.example.com:5432/app?pgbouncer=true&connection_limit=1",
			wantWarn: "Prisma",
			check: func(t *testing.T, c *Config) {
				if c.Pooler != PoolerTransaction || c.MaxConns() != 1 {
					t.Errorf("Pooler %v MaxConns %d, want transaction and 1", c.Pooler, c.MaxConns())
				}
			},
		},
		{
			name:      "Prisma schema",
			dsn:       "postgresql://app:S3cretPW@db.example.com:5432/app?schema=public",
			wantErr:   ErrFormat,
			wantField: "schema",
			wantHint:  "search_path",
		},
		{
			name: "DB_POOL_SIZE",
			env:  map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app", "DB_POOL_SIZE": "5", "DB_MAX_OVERFLOW": "2"},
			check: func(t *testing.T, c *Config) {
				if c.Size != 5 || c.Overflow != 2 {
					t.Errorf("Size %d Overflow %d, want 5 and 2", c.Size, c.Overflow)
				}
			},
		},
		{
			name:      "DB_POOL_SIZE bad",
			env:       map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app", "DB_POOL_SIZE": "0"},
			wantField: "DB_POOL_SIZE",
		},
		{
			name:      "DB_USERNAME",
			env:       map[string]string{"DB_HOST": host, "DB_USERNAME": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app"},
			wantErr:   ErrUnknownKey,
			wantField: "DB_USERNAME",
			wantHint:  "DB_USER?",
		},
		{
			name:      "DB_PASWORD",
			env:       map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASWORD": "S3cretPW", "DB_PASSWORD": "", "DB_NAME": "app"},
			wantErr:   ErrUnknownKey,
			wantField: "DB_PASWORD",
			wantHint:  "DB_PASSWORD?",
		},
		{
			name:     "unrelated DB_* variable",
			env:      map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app", "DB_CONNECTION": "pgsql"},
			wantWarn: "DB_CONNECTION",
		},
		{
			name:      "Supabase [YOUR-PASSWORD]",
			dsn:       "postgresql://postgres:[YOUR-PASSWORD]@db.abcdefgh.supabase.co:5432/postgres",
			wantErr:   ErrPlaceholder,
			wantField: "password",
		},
		{
			name:      "<password>",
			dsn:       "postgres://app:<password>@db.example.com/app",
			wantErr:   ErrPlaceholder,
			wantField: "password",
		},
		{
			name:      "********",
			dsn:       "host=db.example.com user=app password=******** dbname=app",
			wantErr:   ErrPlaceholder,
			wantField: "password",
		},
		{
			name:      "DB_PASSWORD placeholder",
			env:       map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "[YOUR-PASSWORD]", "DB_NAME": "app"},
			wantErr:   ErrPlaceholder,
			wantField: "DB_PASSWORD",
		},
		{
			name:      "docker-compose DB_SSLMODE=disable",
			env:       map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app", "DB_SSLMODE": "disable"},
			wantField: "DB_SSLMODE",
			wantHint:  "DB_ALLOW_INSECURE=true",
		},
		{
			name:  "DB_SSLMODE=disable with DB_ALLOW_INSECURE",
			env:   map[string]string{"DB_HOST": host, "DB_USER": "app", "DB_PASSWORD": "S3cretPW", "DB_NAME": "app", "DB_SSLMODE": "disable", "DB_ALLOW_INSECURE": "true"},
			check: func(t *testing.T, c *Config) { wantConn(host, 5432, "app", "app", "S3cretPW", false)(t, c) },
		},
		{
			name:     "leading and trailing space",
			dsn:      "  postgres://app:S3cretPW@db.example.com/app \n",
			wantWarn: "white space",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     "double quotes",
			dsn:      `"postgres://app:S3cretPW@db.example.com/app"`,
			wantWarn: "quotes",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     "single quotes around keyword/value",
			dsn:      `'host=db.example.com user=app password=S3cretPW dbname=app'`,
			wantWarn: "quotes",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     "postgres+psycopg2",
			dsn:      "postgres+psycopg2://app:S3cretPW@db.example.com/app",
			wantWarn: "+psycopg2",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:      "mysql",
			dsn:       "mysql://app:S3cretPW@db.example.com/app",
			wantErr:   ErrFormat,
			wantField: "connection string",
			wantHint:  "MySQL",
		},
		{
			name:     ".env line with export and quotes",
			dsn:      `export DATABASE_URL="postgres://app:S3cretPW@db.example.com/app"`,
			wantWarn: ".env",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     ".env line",
			dsn:      `DATABASE_URL='postgres://app:S3cretPW@db.example.com/app'`,
			wantWarn: ".env",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:     "asyncpg ssl=require",
			dsn:      "postgresql://app:S3cretPW@db.example.com/app?ssl=require",
			wantWarn: "ssl=require read as sslmode=require",
			check:    wantConn(host, 5432, "app", "app", "S3cretPW", true),
		},
		{
			name:      "unknown key without a suggestion",
			dsn:       "postgres://app:S3cretPW@db.example.com/app?frobnicate=1",
			wantErr:   ErrUnknownKey,
			wantField: "frobnicate",
		},
		{
			name: "PostgreSQL settings, options and custom settings pass",
			dsn:  "postgres://app:S3cretPW@db.example.com/app?application_name=x&search_path=public&statement_timeout=5s&options=-c%20work_mem%3D64MB&myext.tenant=7",
			check: func(t *testing.T, c *Config) {
				if len(c.Warnings) != 0 {
					t.Errorf("warnings: %q", c.Warnings)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.ClearEnv(t)
			var c *Config
			var err error
			if tc.env != nil {
				for _, k := range []string{"DB_USERNAME", "DB_PASWORD", "DB_POOL_SIZE", "DB_MAX_OVERFLOW", "DB_CONNECTION", "DB_ALLOW_INSECURE"} {
					t.Setenv(k, "")
				}
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				c, err = FromEnv()
			} else {
				c, err = Parse(tc.dsn)
			}
			t.Logf("err: %v", err)
			if c != nil {
				t.Logf("config: %v warnings: %q", c, c.Warnings)
			}
			checkNoSecret(t, outputs(t, c, err), pastedSecrets...)
			if tc.wantField != "" {
				e := asError(t, err)
				if e.Field != tc.wantField {
					t.Errorf("Field %q, want %q", e.Field, tc.wantField)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v is not %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantHint) {
					t.Errorf("error %q does not say %q", err, tc.wantHint)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.wantWarn != "" && !strings.Contains(strings.Join(c.Warnings, "\n"), tc.wantWarn) {
				t.Errorf("warnings %q do not say %q", c.Warnings, tc.wantWarn)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// wantConn checks the connection pgx would make from c.
func wantConn(host string, port uint16, user, db, password string, tls bool) func(*testing.T, *Config) {
	return func(t *testing.T, c *Config) {
		t.Helper()
		pc, err := c.PgxPoolConfig()
		if err != nil {
			t.Fatal(err)
		}
		cc := pc.ConnConfig
		if cc.Host != host || cc.Port != port || cc.User != user || cc.Database != db || cc.Password != password {
			t.Errorf("got host %q port %d user %q db %q (password right: %v)", cc.Host, cc.Port, cc.User, cc.Database, cc.Password == password)
		}
		checkTLSOnly(t, cc, tls)
	}
}

// A Config shows its masked connection string and its options under every verb, in JSON
// and through slog, and never the password.
func TestConfigFormatsMasked(t *testing.T) {
	testhelp.ClearEnv(t)
	c := mustParse(t, "postgres://app:S3cretPW@db.example.com/app?pool_size=4")
	outs := outputs(t, c, nil)
	checkNoSecret(t, outs, "S3cretPW")
	for _, o := range outs[:len(outs)-1] { // the last is the warnings
		if !strings.Contains(o, "xxxxx") {
			t.Errorf("output %q does not show the masked connection string", o)
		}
	}
	var m map[string]any
	js, _ := json.Marshal(c)
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	if m["Size"] != float64(4) || m["AcquireTimeout"] != (30*time.Second).String() {
		t.Errorf("JSON %s: want Size 4 and AcquireTimeout 30s", js)
	}
	var zero Config
	checkNoSecret(t, outputs(t, &zero, nil), "S3cretPW")
}
