package config

import (
	_ "embed"
	"fmt"
	"strings"
)

// This file decides which connection string keys are known: pgsteady's own (keyRules), the
// libpq keys pgx understands, and PostgreSQL's run-time settings, which pgx sends to the
// server. Keys that other ecosystems write (Prisma, JDBC) are converted when their meaning
// is unambiguous and refused with the fix otherwise; any other key is an error that names
// the closest known key. Without this check a typo such as sslmod or max_overflows would
// be sent to the server as a setting and fail there (FATAL 42704) or, worse, pass silently.

// pgSettingsText lists PostgreSQL's run-time settings that a session can set, one per line:
// every setting of context user, superuser, backend or superuser-backend that PostgreSQL 15's
// `postgres --describe-config` lists (checked on 2026-12-03), and those that versions 16 and 17
// added (from their documentation).
//
//go:embed pgsettings.txt
var pgSettingsText string

// pgSettings is pgSettingsText as a set.
var pgSettings = func() map[string]bool {
	m := make(map[string]bool)
	for _, s := range strings.Fields(pgSettingsText) {
		m[s] = true
	}
	return m
}()

// libpqKeys are the keys pgx reads itself (pgconn's and pgx's ConnConfig's), which are not
// sent to the server. "options" is sent, and the server reads it as libpq's -c name=value.
var libpqKeys = []string{
	"host", "port", "dbname", "database", "user", "password", "passfile", "connect_timeout",
	"sslmode", "sslkey", "sslcert", "sslcertmode", "sslrootcert", "sslnegotiation", "sslpassword",
	"sslsni", "krbspn", "krbsrvname", "target_session_attrs", "service", "servicefile",
	"min_protocol_version", "max_protocol_version", "channel_binding", "require_auth", "options",
	"default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity",
}

// knownKey reports whether key may stay in the connection string.
func knownKey(key string) bool {
	for _, k := range libpqKeys {
		if key == k {
			return true
		}
	}
	// PostgreSQL's setting names are case-insensitive; a name of identifiers joined by '.' is
	// a custom setting (an extension's, or an application's own placeholder).
	return pgSettings[strings.ToLower(key)] || customSetting(key)
}

// customSetting reports whether key is a custom setting's name: two or more identifiers
// joined by '.'.
func customSetting(key string) bool {
	parts := strings.Split(key, ".")
	if len(parts) < 2 {
		return false
	}
	for _, part := range parts {
		if !settingName(part) {
			return false
		}
	}
	return true
}

// settingName reports whether s is an identifier: a letter or '_', then letters, digits, '_'
// or '$'.
func settingName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c == '$' || c >= '0' && c <= '9'):
		default:
			return false
		}
	}
	return true
}

// suggestion returns the known key closest to key, or "" when none is close.
func suggestion(key string) string {
	candidates := make([]string, 0, len(keyRules)+len(libpqKeys)+len(pgSettings))
	for _, r := range keyRules {
		candidates = append(candidates, r.key)
	}
	candidates = append(candidates, libpqKeys...)
	return closest(key, append(candidates, strings.Fields(pgSettingsText)...))
}

// editDistance is the optimal string alignment distance between a and b: insertions,
// deletions, substitutions and swaps of neighbours, each 1.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// unknownKeyError is the error for a key nobody knows. A key written right after a
// password in a keyword/value string is likely the rest of an unquoted password holding a
// space, so the error then names the password and never the key.
func unknownKeyError(p dsnParam) error {
	if !customSetting(p.key) && !settingName(strings.ReplaceAll(p.key, "-", "_")) {
		// Not even shaped like a name: most likely a piece of a user name or password that
		// a raw '@', '?' or '/' cut off. It is not named.
		return &Error{Field: "connection string", Err: fmt.Errorf("%w: a key holds characters no setting name has; "+
			"if a user name or password holds @, ?, /, : or #, percent-encode it (%%40, %%3F, %%2F, %%3A, %%23)", ErrUnknownKey)}
	}
	s := suggestion(p.key)
	switch {
	case p.afterSecret && s == "":
		return &Error{Field: "password", Err: fmt.Errorf("%w follows it: %s", ErrUnknownKey, quoteHint)}
	case p.afterSecret:
		// Probably a typo, but it may be the rest of the password: the key is not named.
		return &Error{Field: "password", Err: fmt.Errorf("%w follows it; did you mean %s? (if it is the rest of the password: %s)",
			ErrUnknownKey, s, quoteHint)}
	case s != "":
		return &Error{Field: p.key, Err: fmt.Errorf("%w; did you mean %s?", ErrUnknownKey, s)}
	}
	return &Error{Field: p.key, Err: fmt.Errorf("%w: not a pgsteady, libpq or PostgreSQL setting name", ErrUnknownKey)}
}

// quoteHint is the fix for a password that holds spaces.
const quoteHint = "a value holding spaces must be quoted, password='...' (with \\' for a quote " +
	"and \\\\ for a backslash), or percent-encoded in a URL"

// foreignKey is a key another ecosystem writes into its URLs.
type foreignKey struct {
	origin string
	to     string                      // the key it becomes; "" drops it with a warning
	value  func(string) (string, bool) // converts the value; nil keeps it
	fix    string                      // when set, the key is refused with this fix
}

// foreignKeys are the keys of Prisma and JDBC URLs.
var foreignKeys = map[string]foreignKey{
	"pgbouncer":            {origin: "Prisma", to: keyPooler, value: prismaPgbouncer},
	"connection_limit":     {origin: "Prisma", to: keyMaxConns},
	"statement_cache_size": {origin: "Prisma"},
	"schema":               {origin: "Prisma", fix: "set the search path with options=-c search_path=NAME (in a URL: options=-c%20search_path%3DNAME)"},
	"socket_timeout":       {origin: "Prisma", fix: "bound each call with a context deadline, or set statement_timeout"},
	"sslaccept":            {origin: "Prisma", fix: "use sslmode=verify-full (strict) or sslmode=require (accept_invalid_certs)"},
	"sslidentity":          {origin: "Prisma", fix: "use sslcert and sslkey"},
	"ApplicationName":      {origin: "JDBC", to: "application_name"},
	"connectTimeout":       {origin: "JDBC", to: "connect_timeout"},
	"loginTimeout":         {origin: "JDBC", to: "connect_timeout"},
	"targetServerType":     {origin: "JDBC", to: "target_session_attrs", value: jdbcTarget},
	"prepareThreshold":     {origin: "JDBC"},
	"tcpKeepAlive":         {origin: "JDBC"},
	"currentSchema":        {origin: "JDBC", fix: "set the search path with options=-c search_path=NAME (in a URL: options=-c%20search_path%3DNAME)"},
	"socketTimeout":        {origin: "JDBC", fix: "bound each call with a context deadline, or set statement_timeout"},
	"sslfactory":           {origin: "JDBC", fix: "use sslmode and sslrootcert"},
}

func prismaPgbouncer(v string) (string, bool) {
	switch v {
	case "true":
		return "transaction", true
	case "false":
		return "none", true
	}
	return "", false
}

func jdbcTarget(v string) (string, bool) {
	switch v {
	case "any":
		return "any", true
	case "primary", "master":
		return "primary", true
	case "secondary", "slave":
		return "standby", true
	case "preferSecondary", "preferSlave":
		return "prefer-standby", true
	case "preferPrimary":
		return "", false
	}
	return "", false
}

// convertForeign converts or refuses the keys of foreignKeys found in d and returns a
// warning per conversion. Values are never shown: the key names what was converted.
func convertForeign(d *dsn) ([]string, error) {
	var warnings []string
	for _, p := range append([]dsnParam(nil), d.params...) {
		f, ok := foreignKeys[p.key]
		if !ok || p.afterSecret {
			continue
		}
		if f.fix != "" {
			return nil, formatError(p.key, "a "+f.origin+" key with no pgx counterpart", f.fix)
		}
		v, _, bad := d.take(p.key)
		if bad {
			return nil, &Error{Field: p.key, Limit: "valid percent-encoding"}
		}
		if f.to == "" {
			warnings = append(warnings, p.key+" removed ("+f.origin+"'s key; pgsteady has no use for it)")
			continue
		}
		if f.value != nil {
			w, ok := f.value(v)
			if !ok {
				return nil, &Error{Field: p.key, Err: fmt.Errorf("%w: a %s value pgsteady does not convert", ErrFormat, f.origin)}
			}
			v = w
		}
		if d.has(f.to) {
			return nil, &Error{Field: p.key, Limit: "not given with " + f.to + ", which says the same"}
		}
		d.addEncoded(f.to, v)
		warnings = append(warnings, p.key+" read as "+f.to+" ("+f.origin+"'s spelling)")
	}
	return warnings, nil
}

// checkKeys refuses every key left in d (after pgsteady's own are taken) that is not a
// libpq key pgx understands, a PostgreSQL setting, or a custom setting.
func checkKeys(d *dsn) error {
	for _, p := range d.params {
		if at := strings.IndexByte(p.raw, '@'); d.url && at >= 0 && strings.Contains(p.raw[at:], "/") {
			// A pair holding "@host/db" (as written: its value may not even decode): the user info was cut short by a raw '/', '?' or
			// '#', and its rest (a piece of the password, perhaps) became this pair. Neither
			// is named.
			return formatError("connection string", "a URL whose user name or password holds a raw '/', '?' or '#'",
				"write them as %2F, %3F and %23, and each '@' as %40")
		}
		switch {
		case p.key == "ssl" && d.url:
			if v, _ := d.lookup("ssl"); v != "true" {
				return &Error{Field: "ssl", Limit: "true (pgx's alias for sslmode=require); write other values as sslmode=..."}
			}
		case p.key == "ssl":
			return &Error{Field: "ssl", Err: fmt.Errorf("%w; did you mean sslmode?", ErrUnknownKey)}
		case knownKey(p.key):
		default:
			return unknownKeyError(p)
		}
	}
	return nil
}

// isPlaceholder reports whether a password is a template's placeholder: [YOUR-PASSWORD],
// <password>, {password}, ${DB_PASSWORD}, $DB_PASSWORD, ******** and the like.
func isPlaceholder(pw string) bool {
	p := strings.TrimSpace(pw)
	if len(p) < 3 {
		return false
	}
	first, last := p[0], p[len(p)-1]
	switch {
	case first == '[' && last == ']', first == '<' && last == '>', first == '{' && last == '}':
		return true
	case strings.HasPrefix(p, "${") && last == '}':
		return true
	case first == '$' && isEnvName(p[1:]) && strings.ToUpper(p[1:]) == p[1:]:
		return true
	case strings.Trim(p, "*") == "":
		return true
	}
	l := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(p))
	return l == "yourpassword" || l == "yourdbpassword" || l == "yourdatabasepassword"
}

// placeholderError is the error for a placeholder password found in field.
func placeholderError(field string) error {
	return &Error{Field: field, Err: fmt.Errorf("%w: fill in the database password", ErrPlaceholder)}
}
