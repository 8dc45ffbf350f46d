package config

import (
	"errors"
	"testing"

	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// Unknown pool_ and pgsteady_ keys are errors like any other unknown key.
func TestUnknownKeys(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, param := range []string{"pool_szie=5", "pool_use_lifo=true", "pgsteady_lazy=true", "statement_timout=5s", "ssl=1"} {
		for form, dsn := range forms(param) {
			t.Run(param+"/"+form, func(t *testing.T) {
				_, err := Parse(dsn)
				if e := asError(t, err); e.Value != "" {
					t.Errorf("error %v shows a value", err)
				}
				if !errors.Is(err, ErrUnknownKey) && param != "ssl=1" {
					t.Errorf("error %v is not ErrUnknownKey", err)
				}
			})
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"sslmod", "sslmode", 1}, {"pool_szie", "pool_size", 1}, {"abc", "xyz", 3},
		{"max_overflows", "max_overflow", 1}, {"DB_PASWORD", "DB_PASSWORD", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if s := suggestion("statement_timout"); s != "statement_timeout" {
		t.Errorf("suggestion = %q", s)
	}
}

func TestIsPlaceholder(t *testing.T) {
	t.Parallel()
	for pw, want := range map[string]bool{
		"[YOUR-PASSWORD]": true, "<password>": true, "********": true, "${DB_PASSWORD}": true,
		"$DB_PASSWORD": true, "{password}": true, "your_password": true,
		"S3cret": false, "pa[ss]": false, "**": false, "$ecret": false, "password": false,
	} {
		if got := isPlaceholder(pw); got != want {
			t.Errorf("isPlaceholder(%q) = %v", pw, got)
		}
	}
}
