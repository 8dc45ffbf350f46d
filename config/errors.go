package config

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Error is the error returned for an invalid option. It names what is wrong (a connection
// string key such as "pool_size", an environment variable such as "DB_PORT", or a [Config]
// field such as "Overflow"), the value found and the limit it broke. Every error returned by
// [Parse], [FromEnv], [Config.Validate] and [Config.PgxPoolConfig] is an *Error; use
// [errors.As] to get at it.
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

// redactedMask replaces a password wherever one is shown.
const redactedMask = "xxxxx"

// minSecretLen is the shortest secret that redact replaces by plain substitution. Shorter ones
// are masked only where they sit in a password field: replacing every "ab" in a message would
// make it unreadable without hiding anything a reader could not guess.
const minSecretLen = 3

// secrets is the set of strings that must never appear in output.
type secrets []string

func (s *secrets) add(v ...string) {
	for _, x := range v {
		if len(x) >= minSecretLen {
			*s = append(*s, x)
		}
	}
}

// redact replaces every known secret in text by the mask.
func (s secrets) redact(text string) string {
	for _, x := range s {
		if strings.Contains(text, x) {
			text = strings.ReplaceAll(text, x, redactedMask)
		}
	}
	return text
}

// redactError returns err with every secret removed from an *Error's fields and text. An Err
// whose text holds a secret is replaced by plain text.
func (s secrets) redactError(err error) error {
	if err == nil || len(s) == 0 {
		return err
	}
	var e *Error
	if !errors.As(err, &e) {
		return &Error{Field: "connection string", Err: errors.New(s.redact(err.Error()))}
	}
	out := &Error{
		Field: s.redact(e.Field),
		Value: s.redact(e.Value),
		Limit: s.redact(e.Limit),
		Err:   e.Err,
	}
	if e.Err != nil {
		if text := e.Err.Error(); s.redact(text) != text {
			out.Err = errors.New(s.redact(text))
		}
	}
	return out
}

// parseError turns an error from pgx's parsers into an *Error. A *pgconn.ParseConfigError
// quotes the connection string (redacted on a best-effort basis) and keeps the original in a
// public field; the text is rebuilt around shown, a copy the caller has already redacted, and
// only that text is kept.
func parseError(err error, shown string, sec secrets) error {
	text := err.Error()
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		cp := *pce
		cp.ConnString = shown
		text = cp.Error()
	}
	return &Error{Field: "connection string", Err: errors.New(sec.redact(text))}
}
