package config

import (
	"errors"
	"strings"
)

// Error is the error returned for an invalid option. It names what is wrong (a connection
// string key such as "pool_size", an environment variable such as "DB_PORT", or a [Config]
// field such as "Overflow"), the value found and the limit it broke. Every error returned by
// [Parse], [FromEnv], [Config.Validate] and [Config.PgxPoolConfig] is an *Error; use
// [errors.As] to get at it. An invalid [Config.Retry] is an *Error with Field "Retry" whose
// Err is the *[retry.PolicyError] naming the policy's field: errors.As finds either.
//
// An Error never holds a password: not in its fields, not in Err, not in its text. When pgx's
// own parser rejects a connection string, Err carries pgx's message with the connection string
// replaced by a redacted copy, as plain text (the original *pgconn.ParseConfigError holds the
// unredacted string in a public field, so it is not kept).
type Error struct {
	// Field is the connection string key, environment variable or Config field at fault, or
	// "connection string" when the string as a whole does not parse.
	Field string
	// Value is the offending value as text, or "" when a value is missing.
	Value string
	// Limit says what would have been accepted, such as ">= 0"; "" when Err says it all.
	Limit string
	// Err is the underlying cause, or nil.
	Err error
}

// Error returns "config: Field must be Limit, got Value", followed by ": Err" when Err is set.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	b.WriteString(e.Field)
	if e.Limit != "" {
		b.WriteString(" must be ")
		b.WriteString(e.Limit)
		if e.Value != "" {
			b.WriteString(", got ")
			b.WriteString(e.Value)
		}
	} else if e.Value != "" {
		b.WriteString(" = ")
		b.WriteString(e.Value)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// Sentinels that an [Error]'s Err wraps, for [errors.Is].
var (
	// ErrUnknownKey: a connection string key (or a DB_* variable) that is not pgsteady's,
	// not libpq's, and not a PostgreSQL setting. The error names the key and, when one is
	// close, the key meant ("did you mean max_overflow?").
	ErrUnknownKey = errors.New("unknown key")
	// ErrPlaceholder: a password left as a template wrote it ([YOUR-PASSWORD], <password>,
	// ********, ${DB_PASSWORD}). The error names where to fill in the real one.
	ErrPlaceholder = errors.New("a placeholder, not a password")
	// ErrFormat: a connection string in a form that has no unambiguous PostgreSQL meaning,
	// such as a MySQL URL, a JDBC URL for another database, or a URL whose password holds a
	// raw '/'. The error names the form and the fix, never the text.
	ErrFormat = errors.New("unsupported connection string")
)
