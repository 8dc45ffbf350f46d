package config

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// This file keeps passwords out of every error, warning and String output.

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
