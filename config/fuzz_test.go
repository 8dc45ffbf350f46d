package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// fileKeys make pgconn read files; the fuzzer must not point them at /dev/stdin and the like.
var fileKeys = []string{"passfile", "service", "servicefile", "sslrootcert", "sslcert", "sslkey"}

// FuzzParse checks that Parse never panics, that every error is an *Error, that no output
// shows the password, and that the cleaned connection string means to pgx exactly what the
// original meant, minus pgsteady's keys.
func FuzzParse(f *testing.F) {
	testhelp.ClearEnv(f)
	for _, s := range sampleDSNs {
		f.Add(s)
	}
	for _, s := range []string{
		"postgres://neondb_owner:npg_S3cretPW@ep-patient-lake-a816cbtn-pooler.eastus2.azure.neon.tech/neondb?sslmode=require&channel_binding=require",
		"postgres://u:S3cretPW@db.example.com/d?pool_size=5&max_overflow=5&pool_max_conns=10&pool_timeout=2.5&pool_recycle=60&pool_pre_ping=true",
		"postgres://u:S3cretPW@db.example.com/d?pool_max_conn_lifetime=1h&pool_max_conn_lifetime_jitter=1m&pool_max_conn_idle_time=1m&pool_health_check_period=5s&pool_ping_timeout=1s",
		"host=db.example.com user=u password='S3cret PW' pool_size=3 pooler=transaction pgsteady_keep_channel_binding=true channel_binding=require",
		"host=db.example.com password=S3cretPW sslmode=disable pgsteady_allow_insecure=true pool_min_conns=10",
		"host=db.example.com password=S3cretPW port=x",
		"postgres://u:S3cretPW@db.example.com:x/d",
		"postgres://u:S3cret%PW@db.example.com/d",
		"postgres://u:S3cretPW@[::1/d",
		"host=db.example.com password='S3cretPW",
		"postgres://u:S3cretPW@h/d?pool_size=%zz",
		"postgres://u:S3cretPW@h/d?pool_size=1=2",
		"host=h password=S3cretPW pool_szie=4",
		// Forms people paste: SQLAlchemy URLs, Supabase's pooler, raw '@' and ':' in passwords.
		"postgresql+psycopg2://u:S3cretPW@db.example.com/d?pool_size=2&pool_pre_ping=true",
		"postgresql+psycopg://u:S3cretPW@db.example.com:5432/d?sslmode=verify-full",
		"postgresql+asyncpg://postgres.abcd:S3cretPW@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
		"postgres://postgres.abcd:S3cretPW@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
		"postgresql+psycopg2://u:p@S3cretPW@db.example.com/d",
		"postgres://u:p@ss:S3cretPW@db.example.com:5432/d?pool_size=3",
		"postgres://u@server:S3cretPW@db.example.com/d",
		"postgres://u:p@S3cretPW@[::1]:5432,db.example.com/d",
		"postgres://u:S3cretPW@db.example.com:5432?application_name=a@b",
		"postgresql+asyncpg://u:S3cretPW@db.example.com/d?ssl=require&pool_size=2",
		"postgresql+asyncpg://u:S3cretPW@127.0.0.1/d?ssl=disable",
		"postgresql+asyncpg://u:S3cretPW@db.example.com/d?ssl=true",
	} {
		f.Add(s)
	}
	f.Fuzz(checkParse)
}

// checkParse is FuzzParse's check of one connection string.
func checkParse(t *testing.T, s string) {
	// pgx reads what Parse reads: the URL without a SQLAlchemy driver in its scheme.
	pgxForm, _, pasteErr := unpaste(s)
	if pasteErr != nil {
		pgxForm = s
	}
	d, splitErr := parseDSN(pgxForm)
	if splitErr == nil && slices.ContainsFunc(fileKeys, d.has) {
		t.Skip()
	}
	orig, origErr := pgconn.ParseConfig(pgxForm)
	var pws []string
	if origErr == nil && len(orig.Password) >= minSecretLen {
		pws = append(pws, orig.Password)
	}
	if errors.Is(splitErr, errRawAt) && len(d.rawPassword) >= minSecretLen {
		pws = append(pws, d.rawPassword) // the whole password, as its writer meant it
	}
	shows := func(what, out string) {
		for _, pw := range pws {
			if strings.Contains(out, pw) {
				t.Fatalf("%s shows the password %q: %s", what, pw, out)
			}
		}
	}

	c, err := Parse(s)
	if err != nil {
		checkParseError(t, err, shows)
		return
	}
	shows("String()", c.String())
	shows("Warnings", strings.Join(c.Warnings, "\n"))
	if origErr != nil {
		t.Fatalf("Parse accepted %q, which pgx refuses: %v", pgxForm, origErr)
	}
	if errors.Is(splitErr, errRawAt) {
		t.Fatalf("Parse accepted %q, whose host list holds a '@'", s)
	}
	// ssl=<sslmode> may have become sslmode=<sslmode>, and Prisma's and JDBC's keys
	// pgsteady's or libpq's.
	delete(orig.RuntimeParams, "ssl")
	for k := range foreignKeys {
		delete(orig.RuntimeParams, k)
	}
	checkCleaned(t, c, orig)
	if _, err := c.PgxPoolConfig(); err != nil {
		t.Fatalf("PgxPoolConfig after a successful Parse: %v", err)
	}
}

// checkParseError checks that err is an *Error without the password or pgx's raw error.
func checkParseError(t *testing.T, err error, shows func(what, out string)) {
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error %v is %T, not *Error", err, err)
	}
	shows("error", err.Error())
	shows("error Value", e.Value)
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		t.Fatalf("a *pgconn.ParseConfigError is in the chain")
	}
}

// checkCleaned checks that the cleaned connection string means to pgx what orig meant,
// minus pgsteady's keys.
func checkCleaned(t *testing.T, c *Config, orig *pgconn.Config) {
	got, err := pgconn.ParseConfig(c.st.conn)
	if err != nil {
		t.Fatalf("cleaned string %q does not parse: %v", c.st.shown, err)
	}
	if got.User != orig.User || got.Password != orig.Password || got.Database != orig.Database ||
		!slices.Equal(servers(got), servers(orig)) {
		t.Fatalf("cleaned string %q names another server", c.st.shown)
	}
	for k, v := range orig.RuntimeParams {
		if strings.HasPrefix(k, "pool_") || strings.HasPrefix(k, "pgsteady_") || k == "max_overflow" || k == "pooler" {
			if _, ok := got.RuntimeParams[k]; ok {
				t.Fatalf("%s still reaches the server", k)
			}
			continue
		}
		if got.RuntimeParams[k] != v {
			t.Fatalf("runtime parameter %s = %q, was %q", k, got.RuntimeParams[k], v)
		}
	}
}

// FuzzDBURL checks that the URL built from DB_* variables gives pgx back exactly the user,
// password and database name.
func FuzzDBURL(f *testing.F) {
	testhelp.ClearEnv(f)
	f.Add("neondb_owner", "npg_S3cret", "neondb")
	f.Add("us:er@x", "p@ss:w/o?r#d% &+=", "my db/x?y#z%")
	f.Add(" u ", " p ", " d ")
	f.Fuzz(func(t *testing.T, user, password, name string) {
		vars := map[string]string{"DB_USER": user, "DB_PASSWORD": password, "DB_HOST": "db.example.com", "DB_NAME": name}
		u, err := dbURL(lookupMap(vars), "DB_HOST")
		if err != nil {
			if user != "" && name != "" {
				t.Fatalf("dbURL: %v", err)
			}
			return
		}
		pc, err := pgconn.ParseConfig(u)
		if strings.ContainsRune(user+password+name, 0) {
			if err == nil {
				t.Fatalf("pgx accepted a NUL byte")
			}
			return
		}
		if err != nil {
			t.Fatalf("pgx refuses the built URL: %v", err)
		}
		if pc.User != user || pc.Password != password || pc.Database != name {
			t.Fatalf("round trip: user %q password %q database %q", pc.User, pc.Password, pc.Database)
		}
	})
}

// servers lists the host:port pairs pgx would try, in order, each once (sslmode prefer and
// allow try each server twice).
func servers(cfg *pgconn.Config) []string {
	var out []string
	for _, a := range hostsOf(cfg) {
		s := fmt.Sprintf("%s:%d", a.host, a.port)
		if len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// pastedForms build a connection string (or DB_* environment) around a password, in the
// forms people paste, with the password written raw or escaped; extra is one more
// key=value pair.
var pastedForms = []func(user, pw, extra string) (dsn string, env map[string]string){
	func(u, p, x string) (string, map[string]string) {
		return "postgres://" + u + ":" + p + "@db.example.com/app?" + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "postgresql://" + url.PathEscape(u) + ":" + url.QueryEscape(p) + "@db.example.com:5432/app?" + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "host=db.example.com user=" + u + " password=" + p + " dbname=app " + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "host=db.example.com user=" + u + " password=" + quoteKV(p) + " " + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "Server=db.example.com;Port=5432;Database=app;User Id=" + u + ";Password=" + p + ";SSL Mode=Require;" + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return `Host=db.example.com;Username=` + u + `;Password="` + strings.ReplaceAll(p, `"`, `""`) + `";` + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "jdbc:postgresql://db.example.com:5432/app?user=" + u + "&password=" + p + "&" + x, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return `export DATABASE_URL="postgres://` + u + ":" + p + `@db.example.com/app?` + x + `"`, nil
	},
	func(u, p, x string) (string, map[string]string) {
		return " postgres+psycopg2://" + u + ":" + p + "@db.example.com/app?pgbouncer=true&" + x + "\n", nil
	},
	func(u, p, x string) (string, map[string]string) {
		return "", map[string]string{"DB_HOST": "db.example.com", "DB_USER": u, "DB_PASSWORD": p, "DB_NAME": "app", "DB_POOL_SIZE": x}
	},
	func(u, p, x string) (string, map[string]string) {
		return "", map[string]string{"DB_HOST": "postgres://" + u + ":" + p + "@db.example.com/app?" + x, "DB_USER": u, "DB_PASSWORD": "", "DB_NAME": "app"}
	},
	func(u, p, x string) (string, map[string]string) {
		return "", map[string]string{"DB_HOST": "db.example.com", "DB_USER": u, "DB_PASWORD": p, "DB_PASSWORD": "", "DB_NAME": "app", x: "1"}
	},
}

// FuzzPasted checks, across every pasted form, that no output (the error, String, every
// fmt verb, GoString, JSON, slog, the warnings) shows the password or any fragment of it:
// each run of letters and digits of 6 bytes or more that holds a letter and a digit and is
// not found elsewhere in the input.
func FuzzPasted(f *testing.F) {
	testhelp.ClearEnv(f)
	for i := range pastedForms {
		f.Add(uint8(i), "app", "Tok3nX horse S3cretPW", "pool_size=2")
		f.Add(uint8(i), "app", "QZa1x@QZb2x:QZc3x/QZd4x", "sslmod=require")
		f.Add(uint8(i), "app", "Pa55word;x=1&y'z\"w", "max_overflows=1")
		f.Add(uint8(i), "a b", "[YOUR-PASSWORD]", "application_name=x")
	}
	f.Fuzz(func(t *testing.T, form uint8, user, pw, extra string) {
		build := pastedForms[int(form)%len(pastedForms)]
		dsn, env := build(user, pw, extra)
		if nd, _ := build("u", "p", extra); readsFiles(dsn) || readsFiles(nd) {
			t.Skip()
		}
		frags := fragments(pw)
		neutralDSN, neutralEnv := build(user, "", extra)
		var outs []string
		c, err := parsePasted(dsn, env)
		outs = append(outs, outputs(t, c, err)...)
		nc, nerr := parsePasted(neutralDSN, neutralEnv)
		neutral := neutralDSN + user + extra + strings.Join(outputs(t, nc, nerr), "\n")
		for k, v := range neutralEnv {
			neutral += k + v
		}
		for _, fr := range frags {
			if strings.Contains(neutral, fr) {
				continue
			}
			for _, o := range outs {
				if strings.Contains(o, fr) {
					t.Fatalf("form %d: output shows %q of the password: %s", int(form)%len(pastedForms), fr, o)
				}
			}
		}
	})
}

// readsFiles reports whether pgconn would read a file named in s (as pasted, or its URL
// decoded): the fuzzer must not point it at /dev/stdin and the like.
func readsFiles(s string) bool {
	conn, _, err := unpaste(s)
	if err != nil {
		conn = s
	}
	d, _ := parseDSN(conn)
	for _, k := range fileKeys {
		if strings.Contains(s, k) || d.has(k) {
			return true
		}
	}
	return false
}

// parsePasted is Parse(dsn), or FromEnv over env when env is set.
func parsePasted(dsn string, env map[string]string) (*Config, error) {
	if env == nil {
		return Parse(dsn)
	}
	var names []string
	for k := range env {
		if strings.HasPrefix(k, "DB_") {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	return fromEnv(lookupMap(env), names)
}

// fragments returns the runs of ASCII letters and digits of s, 6 bytes or more, holding a
// letter and a digit: what a reader could recognise as part of a password, unlike the words
// and numbers that any output holds.
func fragments(s string) []string {
	var out []string
	for _, run := range strings.FieldsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) {
		if len(run) >= 6 && strings.ContainsAny(run, "0123456789") &&
			strings.IndexFunc(run, func(r rune) bool { return r > '9' }) >= 0 {
			out = append(out, run)
		}
	}
	return out
}
