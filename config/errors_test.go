package config

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func TestErrorText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Field: "Overflow", Value: "-3", Limit: ">= 0"}, "config: Overflow must be >= 0, got -3"},
		{&Error{Field: "DB_USER, DB_NAME", Limit: "set"}, "config: DB_USER, DB_NAME must be set"},
		{&Error{Field: "Retry", Err: io.EOF}, "config: Retry: EOF"},
		{&Error{Field: "x", Value: "v"}, "config: x = v"},
		{&Error{Field: "x", Value: "v", Limit: "w", Err: io.EOF}, "config: x must be w, got v: EOF"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	if !errors.Is(&Error{Field: "Retry", Err: io.EOF}, io.EOF) {
		t.Errorf("Unwrap does not reach Err")
	}
}

func TestRedactError(t *testing.T) {
	t.Parallel()
	var sec secrets
	sec.add("topsecret", "ab")
	err := sec.redactError(&Error{Field: "f topsecret", Value: "topsecret", Limit: "l", Err: errors.New("x topsecret y")})
	if strings.Contains(err.Error(), "topsecret") {
		t.Fatalf("redactError left the secret: %v", err)
	}
	if e := asError(t, err); e.Value != redactedMask {
		t.Errorf("Value = %q", e.Value)
	}
	clean := &Error{Field: "f", Err: io.EOF}
	if !errors.Is(sec.redactError(clean), io.EOF) {
		t.Errorf("a clean cause must stay in the chain")
	}
	got := sec.redactError(errors.New("plain topsecret"))
	if strings.Contains(got.Error(), "topsecret") {
		t.Errorf("plain error kept the secret: %v", got)
	}
	asError(t, got)
	if sec.redactError(nil) != nil {
		t.Errorf("redactError(nil) != nil")
	}
	if len(sec) != 1 {
		t.Errorf("secrets = %q: a 2-byte secret must not be substituted", sec)
	}
}

func TestParseErrorDropsTheRawString(t *testing.T) {
	t.Parallel()
	_, perr := pgconn.ParseConfig("postgres://u:rawpassword@h:bad/d")
	if perr == nil {
		t.Fatal("want a pgconn error")
	}
	err := parseError(perr, nil)
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		t.Fatal("the *pgconn.ParseConfigError (with the raw string) is still in the chain")
	}
	if !strings.Contains(err.Error(), "invalid port") || strings.Contains(err.Error(), "rawpassword") || strings.Contains(err.Error(), "bad") {
		t.Fatalf("parseError = %q", err)
	}
}
