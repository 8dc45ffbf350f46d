package config

import (
	"reflect"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// sample connection strings in both forms, all accepted by pgconn.
var sampleDSNs = []string{
	"",
	"postgres://",
	"postgres://db.example.com",
	"postgresql://u@db.example.com/d",
	"postgres://u:pw@db.example.com:5433/d?sslmode=require&application_name=x",
	"postgres://u:p%40ss@db.example.com/d%2Fb?application_name=a%20b",
	"postgres://u:pw@[::1]:5432/d?sslmode=disable",
	"postgres://u:pw@a.example.com:5432,b.example.com:5433/d?target_session_attrs=any",
	"postgres://u:pw@db.example.com?sslmode=require",
	"postgres://u:x?y@db.example.com/d?sslmode=require",
	"postgres://u:pw@/d?host=/tmp&port=5433",
	"host=db.example.com user=u password=pw dbname=d sslmode=require",
	"host=db.example.com  user = u\tpassword='p w \\' x' dbname=d",
	"host=db.example.com user=u password=a\\ b application_name=",
	"host=db.example.com application_name= user=u",
	"   host=db.example.com   ",
	"host=db.example.com password=''",
}

func TestDSNRenderIsEquivalent(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, s := range sampleDSNs {
		t.Run(s, func(t *testing.T) {
			want, err := pgconn.ParseConfig(s)
			if err != nil {
				t.Fatalf("sample does not parse: %v", err)
			}
			d, err := parseDSN(s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgconn.ParseConfig(d.String())
			if err != nil {
				t.Fatalf("rendered %q: %v", d.String(), err)
			}
			if got.Host != want.Host || got.Port != want.Port || got.User != want.User ||
				got.Password != want.Password || got.Database != want.Database ||
				!reflect.DeepEqual(got.RuntimeParams, want.RuntimeParams) ||
				len(got.Fallbacks) != len(want.Fallbacks) || (got.TLSConfig == nil) != (want.TLSConfig == nil) {
				t.Fatalf("rendered %q parses differently from %q", d.String(), s)
			}
			if d.url && d.String() != s {
				t.Errorf("URL re-rendered as %q, want it unchanged", d.String())
			}
		})
	}
}

func TestDSNTakeLookupAdd(t *testing.T) {
	t.Parallel()
	d, err := parseDSN("postgres://u:pw@h/d?a=1&pool_size=2&b=%33&pool_size=4&dbname=x")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := d.lookup("b"); !ok || v != "3" {
		t.Errorf("lookup(b) = %q, %v", v, ok)
	}
	if v, ok := d.lookup("database"); !ok || v != "x" {
		t.Errorf("lookup(database) = %q, %v; dbname is pgx's database", v, ok)
	}
	if !d.has("database") || d.has("c") {
		t.Errorf("has: wrong")
	}
	if v, ok, bad := d.take("pool_size"); !ok || bad || v != "4" {
		t.Errorf("take(pool_size) = %q, %v, %v; want the last one", v, ok, bad)
	}
	if _, ok, _ := d.take("pool_size"); ok {
		t.Errorf("pool_size still there after take")
	}
}

func TestDSNTakeAddAndRender(t *testing.T) {
	t.Parallel()
	d, err := parseDSN("postgres://u:pw@h/d?a=1&pool_size=2&b=%33&pool_size=4&dbname=x")
	if err != nil {
		t.Fatal(err)
	}
	d.take("pool_size")
	d.add("sslmode", "require")
	if got, want := d.String(), "postgres://u:pw@h/d?a=1&b=%33&dbname=x&sslmode=require"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, k := range []string{"a", "b", "dbname", "sslmode"} {
		d.take(k)
	}
	if got, want := d.String(), "postgres://u:pw@h/d"; got != want {
		t.Errorf("String() with no parameters left = %q, want %q", got, want)
	}
}

func TestDSNTakeEdgeCases(t *testing.T) {
	t.Parallel()
	d, _ := parseDSN("postgres://h/d?pool_size=%zz")
	if _, ok, bad := d.take("pool_size"); !ok || !bad {
		t.Errorf("undecodable value: ok %v bad %v, want both", ok, bad)
	}

	// An empty value written last would swallow an appended pair.
	d, _ = parseDSN("host=h application_name=")
	d.add("sslmode", "require")
	if got, want := d.String(), "host=h application_name='' sslmode=require"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}

	d, _ = parseDSN("host=h pool_size = '5' password='a b'")
	if v, ok, _ := d.take("pool_size"); !ok || v != "5" {
		t.Errorf("kv take = %q, %v", v, ok)
	}
	if got, want := d.String(), "host=h password='a b'"; got != want {
		t.Errorf("kv String() = %q, want %q", got, want)
	}
}

func TestDSNRedacted(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://u:secret@h/d?sslpassword=k3y&x=1", "postgres://u:xxxxx@h/d?sslpassword=xxxxx&x=1"},
		{"postgres://u:@h/d", "postgres://u:@h/d"},
		{"postgres://u@h/d?password=secret", "postgres://u@h/d?password=xxxxx"},
		{"host=h password='s e c' user=u", "host=h password=xxxxx user=u"},
	}
	for _, tc := range tests {
		d, err := parseDSN(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.redacted(); got != tc.want {
			t.Errorf("redacted(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDSNSecrets(t *testing.T) {
	t.Parallel()
	d, _ := parseDSN("postgres://u:p%40ssword@h/d?password=second&sslpassword=third")
	got := d.secrets()
	for _, want := range []string{"p%40ssword", "p@ssword", "second", "third"} {
		if !slices.Contains(got, want) {
			t.Errorf("secrets %q lack %q", got, want)
		}
	}
	d, _ = parseDSN("host=h password='a \\'b' sslpassword=ab")
	got = d.secrets()
	if !slices.Contains(got, "a 'b") {
		t.Errorf("kv secrets %q lack the decoded password", got)
	}
	if slices.Contains(got, "ab") {
		t.Errorf("secrets %q hold a string shorter than minSecretLen", got)
	}
}

func TestQueryStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    string
		want int
	}{
		{"h/d?x=1", 3},
		{"@h/d?x=1", 4},
		{"h?x=1", 1},
		{"h:5432?x=1", 6},
		{"h", -1},
		{"h/d", -1},
		{"[::1]:5432/d?x", 12},
		{"[a?b]/d?x", 7},
		{"[::1", -1},
		{"a,b:1,c/d?x", 9},
		{"a:1", -1},
		{"a:1,b", -1},
	}
	for _, tc := range tests {
		if got := queryStart(tc.p); got != tc.want {
			t.Errorf("queryStart(%q) = %d, want %d", tc.p, got, tc.want)
		}
	}
}

func TestParseDSNSyntaxErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"novalue", "a b=c", "=x", "a='unterminated", "a='x\\", "a=b\x00",
		"postgres://h/d?&", "postgres://?&", "postgres://h/d?a", "postgres://h/d?a=b=c", "postgres://h/d?%zz=1",
		"postgres://h/d?a=1&&b=2",
	} {
		if _, err := parseDSN(s); err == nil {
			t.Errorf("parseDSN(%q) succeeded", s)
		}
		if _, err := pgconn.ParseConfig(s); err == nil {
			t.Errorf("pgconn accepts %q, which parseDSN refuses", s)
		}
	}
}
