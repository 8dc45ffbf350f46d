package config

import (
	"errors"
	"net/url"
	"strconv"
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

// parseError turns an error from pgx's parsers into an *Error. pgx's texts quote fragments
// of the connection string (a *pgconn.ParseConfigError quotes the whole string, redacted on
// a best-effort basis, and keeps the original in a public field; its causes quote values:
// `missing "=" after "horse"`, `invalid port ":x"`), and a fragment of a password written
// where it does not belong is no longer known as a password. So none of pgx's text is
// passed on as it is: only the message's words before any quote or value, and the cause
// described by its type (see pgxText); the secrets found are masked on top.
func parseError(err error, sec secrets) error {
	return &Error{Field: "connection string", Err: errors.New(sec.redact(pgxText(err)))}
}

// pgxText is err's text with every quoted or appended value cut.
func pgxText(err error) string {
	var pce *pgconn.ParseConfigError
	if !errors.As(err, &pce) {
		return cutValues(err.Error())
	}
	cp := *pce
	cp.ConnString = ""
	msg := strings.TrimPrefix(cp.Error(), "cannot parse ``: ")
	inner := pce.Unwrap()
	if inner == nil {
		return cutValues(msg)
	}
	msg = strings.TrimSuffix(msg, " ("+inner.Error()+")")
	return cutValues(msg) + " (" + causeText(inner) + ")"
}

// pgxCauses are the beginnings of the causes pgconn gives with a quoted value, and what is
// said instead.
var pgxCauses = []struct{ prefix, text string }{
	{`missing "=" after`, `a word without "=" after it`},
	{`unexpected character`, `an unexpected character in the URL (expected ":" or "/")`},
	{`missing key/value separator`, `a URL query parameter without "="`},
	{`extra key/value separator`, `a URL query parameter with two "="`},
}

// causeText describes the cause of a pgx parse error without the values it quotes.
func causeText(err error) string {
	var num *strconv.NumError
	var esc url.EscapeError
	var host url.InvalidHostError
	switch {
	case errors.As(err, &num):
		return "a number: " + num.Err.Error()
	case errors.As(err, &esc):
		return "invalid percent-encoding"
	case errors.As(err, &host):
		return "an invalid character in the host"
	}
	text := err.Error()
	for _, c := range pgxCauses {
		if strings.HasPrefix(text, c.prefix) {
			return c.text
		}
	}
	return cutValues(text)
}

// cutValues cuts text at its first quote or ": ", where pgx's messages start the value.
func cutValues(text string) string {
	if i := strings.IndexAny(text, "\"`'"); i >= 0 {
		text = text[:i]
	}
	if i := strings.Index(text, ": "); i >= 0 {
		text = text[:i]
	}
	return strings.TrimRight(text, " :")
}
