package config

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp"
)

func dbEnv(overrides map[string]string) map[string]string {
	m := map[string]string{
		"DB_USER":     "neondb_owner",
		"DB_PASSWORD": "npg_S3cret",
		"DB_HOST":     "ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech",
		"DB_NAME":     "neondb",
	}
	for k, v := range overrides {
		m[k] = v
	}
	return m
}

func TestFromEnvDBVariables(t *testing.T) {
	tests := []struct {
		name                         string
		env                          map[string]string
		wantHost                     string
		wantPort                     uint16
		wantUser, wantPW, wantDB     string
		wantTLS                      bool
		wantPooler                   PoolerMode
		wantSSLModeQuery, wantInConn string
	}{
		{
			name:     "DB_* variables, defaults",
			env:      dbEnv(nil),
			wantHost: "ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech", wantPort: 5432,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb",
			wantTLS: true, wantPooler: PoolerTransaction, wantInConn: "sslmode=require",
		},
		{
			name: "characters that need escaping",
			env: dbEnv(map[string]string{
				"DB_USER":     "us:er@x",
				"DB_PASSWORD": "p@ss:w/o?r#d% &+=é'\"\\",
				"DB_NAME":     "my db/with?odd#name%",
				"DB_HOST":     "db.example.com",
				"DB_PORT":     "6543",
			}),
			wantHost: "db.example.com", wantPort: 6543,
			wantUser: "us:er@x", wantPW: "p@ss:w/o?r#d% &+=é'\"\\", wantDB: "my db/with?odd#name%",
			wantTLS: true,
		},
		{
			name:     "IPv6 host",
			env:      dbEnv(map[string]string{"DB_HOST": "2001:db8::7", "DB_SSLMODE": "verify-full"}),
			wantHost: "2001:db8::7", wantPort: 5432,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb", wantTLS: true,
		},
		{
			name:     "Unix socket directory",
			env:      dbEnv(map[string]string{"DB_HOST": "/var/run/postgresql", "DB_PORT": "5433"}),
			wantHost: "/var/run/postgresql", wantPort: 5433,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb",
		},
		{
			name:     "loopback, sslmode disable",
			env:      dbEnv(map[string]string{"DB_HOST": "127.0.0.1", "DB_SSLMODE": "disable"}),
			wantHost: "127.0.0.1", wantPort: 5432,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb",
		},
		{
			name:     "DB_HOST with a port",
			env:      dbEnv(map[string]string{"DB_HOST": "db.example.com:5433"}),
			wantHost: "db.example.com", wantPort: 5433,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb", wantTLS: true,
		},
		{
			name:     "DB_HOST with a port, DB_PORT the same",
			env:      dbEnv(map[string]string{"DB_HOST": "db.example.com:5433", "DB_PORT": "5433"}),
			wantHost: "db.example.com", wantPort: 5433,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb", wantTLS: true,
		},
		{
			name:     "DB_HOST bracketed IPv6 with a port",
			env:      dbEnv(map[string]string{"DB_HOST": "[2001:db8::7]:6543"}),
			wantHost: "2001:db8::7", wantPort: 6543,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb", wantTLS: true,
		},
		{
			name:     "Supabase transaction pooler from DB_HOST with its port",
			env:      dbEnv(map[string]string{"DB_HOST": "aws-0-eu-central-1.pooler.supabase.com:6543"}),
			wantHost: "aws-0-eu-central-1.pooler.supabase.com", wantPort: 6543,
			wantUser: "neondb_owner", wantPW: "npg_S3cret", wantDB: "neondb", wantTLS: true, wantPooler: PoolerTransaction,
		},
		{
			name:     "empty DB_PASSWORD lets PGPASSWORD in",
			env:      dbEnv(map[string]string{"DB_PASSWORD": "", "PGPASSWORD": "fromPG"}),
			wantHost: "ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech", wantPort: 5432,
			wantUser: "neondb_owner", wantPW: "fromPG", wantDB: "neondb", wantTLS: true, wantPooler: PoolerTransaction,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.SetEnv(t, tc.env)
			c, err := FromEnv()
			if err != nil {
				t.Fatal(err)
			}
			if c.Pooler != tc.wantPooler {
				t.Errorf("Pooler = %v, want %v", c.Pooler, tc.wantPooler)
			}
			if tc.wantInConn != "" && !strings.Contains(c.st.conn, tc.wantInConn) {
				t.Errorf("connection string %q lacks %q", c.st.shown, tc.wantInConn)
			}
			pc, err := c.PgxPoolConfig()
			if err != nil {
				t.Fatal(err)
			}
			cc := pc.ConnConfig
			if cc.Host != tc.wantHost || cc.Port != tc.wantPort || cc.User != tc.wantUser ||
				cc.Password != tc.wantPW || cc.Database != tc.wantDB {
				t.Errorf("got host=%q port=%d user=%q db=%q (password ok: %v)",
					cc.Host, cc.Port, cc.User, cc.Database, cc.Password == tc.wantPW)
			}
			checkTLSOnly(t, cc, tc.wantTLS)
			if strings.Contains(c.String(), "npg_S3cret") {
				t.Errorf("String() shows the password")
			}
		})
	}
}

// checkTLSOnly checks that cc uses TLS when wantTLS, with no plaintext fallback.
func checkTLSOnly(t *testing.T, cc *pgx.ConnConfig, wantTLS bool) {
	t.Helper()
	if got := cc.TLSConfig != nil; got != wantTLS {
		t.Errorf("TLS = %v, want %v", got, wantTLS)
	}
	if wantTLS && len(cc.Fallbacks) != 0 {
		t.Errorf("%d fallbacks, want none (no plaintext fallback)", len(cc.Fallbacks))
	}
}

func TestFromEnvDatabaseURLWins(t *testing.T) {
	testhelp.SetEnv(t, dbEnv(map[string]string{
		"DATABASE_URL": "postgres://urluser:urlpw@db.example.com/urldb?pool_size=3",
	}))
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	if pc.ConnConfig.User != "urluser" || c.Size != 3 {
		t.Errorf("user %q size %d: DATABASE_URL not used", pc.ConnConfig.User, c.Size)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "DB_USER, DB_PASSWORD, DB_HOST, DB_NAME ignored") {
		t.Errorf("Warnings = %q", c.Warnings)
	}
	for _, w := range c.Warnings {
		if strings.Contains(w, "npg_S3cret") {
			t.Errorf("warning shows DB_PASSWORD: %s", w)
		}
	}
}

func TestFromEnvErrors(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		wantField string
	}{
		{"nothing set", map[string]string{}, "DATABASE_URL"},
		{"only DB_HOST", map[string]string{"DB_HOST": "db.example.com"}, "DB_USER, DB_PASSWORD, DB_NAME"},
		{"only DB_SSLMODE", map[string]string{"DB_SSLMODE": "require"}, "DB_USER, DB_PASSWORD, DB_HOST, DB_NAME"},
		{"empty DB_USER", dbEnv(map[string]string{"DB_USER": ""}), "DB_USER"},
		{"unset DB_PASSWORD", dbEnv(map[string]string{"DB_PASSWORD": "\x00unset"}), "DB_PASSWORD"},
		{"DB_PORT not a number", dbEnv(map[string]string{"DB_PORT": "54x"}), "DB_PORT"},
		{"DB_PORT 0", dbEnv(map[string]string{"DB_PORT": "0"}), "DB_PORT"},
		{"DB_PORT too big", dbEnv(map[string]string{"DB_PORT": "65536"}), "DB_PORT"},
		{"DB_PORT disagrees with DB_HOST's port", dbEnv(map[string]string{"DB_HOST": "db.example.com:5433", "DB_PORT": "5432"}), "DB_PORT"},
		{"DB_HOST with a port that is not a number", dbEnv(map[string]string{"DB_HOST": "db.example.com:54x"}), "DB_HOST"},
		{"DB_HOST bracketed without a port", dbEnv(map[string]string{"DB_HOST": "[2001:db8::7]"}), "DB_HOST"},
		{"DB_HOST with a port out of range", dbEnv(map[string]string{"DB_HOST": "db.example.com:70000"}), "DB_HOST"},
		{"DB_SSLMODE unknown", dbEnv(map[string]string{"DB_SSLMODE": "required"}), "DB_SSLMODE"},
		{"DB_SSLMODE disable to remote", dbEnv(map[string]string{"DB_SSLMODE": "disable"}), "DB_SSLMODE"},
		{"bad DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://u:npg_S3cret@h/d?pool_size=-1"}, "pool_size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			testhelp.SetEnv(t, tc.env)
			_, err := FromEnv()
			e := asError(t, err)
			if e.Field != tc.wantField {
				t.Fatalf("FromEnv(): field %q (%v), want %q", e.Field, err, tc.wantField)
			}
			if strings.Contains(err.Error(), "npg_S3cret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestFromEnvFallsBackToPG(t *testing.T) {
	testhelp.SetEnv(t, map[string]string{"PGHOST": "db.example.com", "PGUSER": "pguser", "PGDATABASE": "pgdb", "PGPASSWORD": "pgSecret"})
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := c.PgxPoolConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cc := pc.ConnConfig; cc.Host != "db.example.com" || cc.User != "pguser" || cc.Database != "pgdb" || cc.TLSConfig == nil {
		t.Fatalf("got host %q user %q db %q tls %v", cc.Host, cc.User, cc.Database, cc.TLSConfig != nil)
	}
}

// TestDBURLRoundTrip checks that pgconn reads back exactly what went into the URL.
func TestDBURLRoundTrip(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, pw := range []string{"plain", "with space", "@:/?#[]%", "ünïcødé", "a+b=c&d", "'quoted'", `back\slash`, " lead", "trail "} {
		vars := map[string]string{"DB_USER": pw, "DB_PASSWORD": pw, "DB_HOST": "db.example.com", "DB_NAME": pw}
		u, err := dbURL(lookupMap(vars), "DB_HOST")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := pgconn.ParseConfig(u)
		if err != nil {
			t.Fatalf("%q: %v", pw, err)
		}
		if pc.User != pw || pc.Password != pw || pc.Database != pw {
			t.Errorf("%q: got user %q password %q database %q", pw, pc.User, pc.Password, pc.Database)
		}
	}
}

func lookupMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}
