package config

import (
	"fmt"
	"strings"
)

// This file recognises connection strings as they are pasted from other ecosystems and turns
// the ones with an unambiguous meaning into a libpq URL or keyword/value string, with a
// warning naming each conversion. Its errors name the form and the fix, never the text: a
// string in a form this code does not understand may hold a password anywhere.

// unpaste returns the connection string pgx can read and a warning per conversion made.
func unpaste(s string) (string, []string, error) {
	var warnings []string
	t := strings.TrimSpace(s)
	changed := false
	if v, ok := cutEnvLine(t); ok {
		t, changed = v, true
		warnings = append(warnings, ".env line read as its value (export, the variable name, '=' and quotes removed)")
	} else if v, ok := cutQuotes(t); ok {
		t, changed = strings.TrimSpace(v), true
		warnings = append(warnings, "quotes around the connection string removed")
	}

	scheme, rest, isURL := cutScheme(t)
	switch {
	case isURL:
		u, warning, err := pgURL(scheme, rest)
		if err != nil {
			return "", nil, err
		}
		if warning != "" {
			warnings = append(warnings, warning)
		}
		if err := checkURLUserinfo(u); err != nil {
			return "", nil, err
		}
		if t != s && !changed {
			warnings = append(warnings, "white space around the connection string removed")
		}
		return u, warnings, nil
	case hasPrefixFold(t, "jdbc:"):
		return "", nil, formatError("connection string", "a JDBC URL without //host or for another database",
			"write postgresql://host:port/dbname?user=...")
	case looksADO(t):
		kv, dropped, err := adoToKV(t)
		if err != nil {
			return "", nil, err
		}
		warnings = append(warnings, "ADO.NET (Npgsql) connection string converted to libpq keyword/value")
		return kv, append(warnings, dropped...), nil
	}
	if !changed {
		return s, nil, nil // keyword/value: pgx skips the white space itself
	}
	return t, warnings, nil
}

// formatError is the error for a connection string in a form Parse does not convert.
func formatError(field, what, fix string) error {
	return &Error{Field: field, Err: fmt.Errorf("%w: %s; %s", ErrFormat, what, fix)}
}

// cutEnvLine returns the value of a .env or shell line (export NAME="value", NAME='value',
// NAME=postgres://...). A line without export must name an upper-case variable, so that a
// libpq keyword/value string (keys are lower-case) is never taken for one.
func cutEnvLine(t string) (string, bool) {
	rest, exported := strings.CutPrefix(t, "export ")
	rest = strings.TrimLeft(rest, " \t")
	name, val, ok := strings.Cut(rest, "=")
	if !ok || !isEnvName(name) || (!exported && strings.ToLower(name) == name) {
		return "", false
	}
	val = strings.TrimSpace(val)
	if v, ok := cutQuotes(val); ok {
		return strings.TrimSpace(v), true
	}
	if _, _, isURL := cutScheme(val); isURL || exported {
		return val, true
	}
	return "", false
}

func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '_' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// cutQuotes returns t without the matching single or double quotes around it.
func cutQuotes(t string) (string, bool) {
	if len(t) >= 2 && (t[0] == '"' || t[0] == '\'') && t[len(t)-1] == t[0] {
		return t[1 : len(t)-1], true
	}
	return "", false
}

// cutScheme splits "scheme://rest" when scheme is made of the characters a URL scheme (or
// JDBC's "jdbc:postgresql") holds.
func cutScheme(t string) (scheme, rest string, ok bool) {
	scheme, rest, ok = strings.Cut(t, "://")
	if !ok || scheme == "" {
		return "", "", false
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("+.-_:", c) >= 0) {
			return "", "", false
		}
	}
	return scheme, rest, true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// foreignSchemes names the URL schemes of other databases, for the error.
var foreignSchemes = []struct{ prefix, name string }{
	{"mysql", "a MySQL URL"}, {"mariadb", "a MariaDB URL"}, {"sqlserver", "a SQL Server URL"},
	{"mssql", "a SQL Server URL"}, {"mongodb", "a MongoDB URL"}, {"redis", "a Redis URL"},
	{"sqlite", "an SQLite URL"}, {"oracle", "an Oracle URL"}, {"jdbc:", "a JDBC URL for another database"},
	{"http", "a web address"},
}

// pgURL returns the postgresql:// or postgres:// URL a scheme stands for, with a warning
// naming the conversion, or an error naming the form.
func pgURL(scheme, rest string) (string, string, error) {
	lower := strings.ToLower(scheme)
	switch {
	case lower == "postgres" || lower == "postgresql":
		if scheme != lower {
			return lower + "://" + rest, "URL scheme read in lower case", nil
		}
		return scheme + "://" + rest, "", nil
	case lower == "jdbc:postgresql":
		return "postgresql://" + rest, "JDBC URL (jdbc:postgresql://) read as postgresql://", nil
	case strings.HasPrefix(lower, "postgresql+") || strings.HasPrefix(lower, "postgres+"):
		_, driver, _ := strings.Cut(scheme, "+") // SQLAlchemy's driver names are lower-case
		if driver == "" || strings.TrimLeft(driver, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			break
		}
		return "postgresql://" + rest, lower + ":// read as postgresql:// (+" + driver +
			" names a Python driver for SQLAlchemy; pgx needs none)", nil
	}
	what := "a URL whose scheme is not postgres or postgresql"
	for _, f := range foreignSchemes {
		if strings.HasPrefix(lower, f.prefix) {
			what = f.name
			break
		}
	}
	return "", "", formatError("connection string", what, "pgsteady connects to PostgreSQL: give a postgres:// or postgresql:// URL")
}

// checkURLUserinfo refuses a URL whose user name or password was cut by a raw '/': libpq and
// pgx end the authority at the first '/', so the rest of a password becomes the host and port,
// a path or query keys, and pgx's errors (or ours, naming a key) would quote it. Such a URL has
// a '@' after its first '/' (in the path), or a '@' in its query or fragment that a '/' follows
// (the host and database that came after the user info). A '@' in a query value without a
// '/' after it (user=name@server, as Azure's single servers want) is left alone.
func checkURLUserinfo(u string) error {
	_, rest, _ := strings.Cut(u, "://")
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return nil
	}
	tail := rest[i:]
	path, query := tail, ""
	if q := strings.IndexAny(tail, "?#"); q >= 0 {
		path, query = tail[:q], tail[q:]
	}
	// A raw '?' before the first '/' is read up to the last '@' (see dsn.go): only a user
	// info cut by the '/' itself can leave its rest in the query.
	cutBySlash := !strings.ContainsAny(rest[:i], "?#")
	at := strings.IndexByte(query, '@')
	if !strings.Contains(path, "@") && (!cutBySlash || at < 0 || !strings.Contains(query[at:], "/")) {
		return nil
	}
	return formatError("connection string", "a URL with a '@' after its first '/'",
		"write each '/' in the user name or password as %2F and each '@' as %40")
}

// adoKeys maps ADO.NET / Npgsql keys (lower case, spaces removed) to libpq keys; "" drops
// the key with a warning, and a key starting with '!' is refused with the text after it.
var adoKeys = map[string]string{
	"host": "host", "server": "host", "datasource": "host", "address": "host",
	"port":     "port",
	"database": "dbname", "initialcatalog": "dbname", "db": "dbname",
	"username": "user", "userid": "user", "user": "user", "uid": "user",
	"password": "password", "pwd": "password",
	"sslmode": "sslmode",
	"timeout": "connect_timeout", "connecttimeout": "connect_timeout", "connectiontimeout": "connect_timeout",
	"applicationname": "application_name",
	"searchpath":      "search_path",
	"maxpoolsize":     keyMaxConns, "maximumpoolsize": keyMaxConns,
	"pooling": "", "trustservercertificate": "", "includeerrordetail": "", "keepalive": "",
	"tcpkeepalive": "", "minpoolsize": "", "minimumpoolsize": "", "enlist": "", "persistsecurityinfo": "",
	"commandtimeout":     "!has no pgx counterpart; bound each call with a context deadline or set statement_timeout",
	"integratedsecurity": "!has no pgx counterpart; give a user and password",
}

// adoNames are the spellings used in errors, for the keys that have one.
var adoNames = map[string]string{
	"host": "Host", "server": "Server", "port": "Port", "database": "Database", "username": "Username",
	"userid": "User Id", "uid": "UID", "password": "Password", "pwd": "PWD", "sslmode": "SSL Mode",
}

func adoKey(k string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(k), " ", ""))
}

// adoName is a key as an error shows it: the key's usual spelling, or its place.
func adoName(k string, n int) string {
	if name, ok := adoNames[k]; ok {
		return name
	}
	if _, ok := adoKeys[k]; ok {
		return k
	}
	return fmt.Sprintf("ADO.NET key %d", n)
}

// looksADO reports whether t is an ADO.NET connection string: Key=Value pairs separated by
// ';', the first one a key ADO.NET knows with one '='.
func looksADO(t string) bool {
	first, _, ok := strings.Cut(t, ";")
	if !ok {
		return false
	}
	k, v, ok := strings.Cut(first, "=")
	_, known := adoKeys[adoKey(k)]
	// A libpq keyword/value string with a ';' in a value has more than one '=' before it.
	return ok && known && !strings.Contains(v, "=")
}

// adoToKV converts an ADO.NET connection string to libpq keyword/value, with a warning
// naming the keys dropped (pgx sets pooling, keepalives and certificate checks itself).
func adoToKV(t string) (string, []string, error) {
	var out []string
	var dropped []string
	prev := ""
	for n := 1; strings.TrimSpace(t) != ""; n++ {
		seg, rest, err := adoPair(t)
		if err != nil {
			return "", nil, formatError(adoName(prev, n-1), "an ADO.NET value "+err.Error(),
				"quote a value holding ';' or quotes: Password=\"...\" (double a quote inside)")
		}
		t = rest
		if seg.key == "" {
			continue // an empty segment (";;" or a trailing ';')
		}
		prev = seg.key
		to, known := adoKeys[seg.key]
		switch {
		case !known:
			return "", nil, formatError(adoName(seg.key, n), "an ADO.NET key pgsteady does not convert",
				"write a postgres:// URL or libpq keyword/value string")
		case to == "":
			dropped = append(dropped, seg.key)
			continue
		case strings.HasPrefix(to, "!"):
			return "", nil, formatError(adoName(seg.key, n), "an ADO.NET key that "+to[1:], "remove it")
		case to == "sslmode":
			mode, ok := adoSSLMode(seg.value)
			if !ok {
				return "", nil, formatError("SSL Mode", "an ADO.NET SSL Mode pgx does not know",
					"use Disable, Allow, Prefer, Require, VerifyCA or VerifyFull")
			}
			seg.value = mode
		}
		out = append(out, to+"="+quoteKV(seg.value))
	}
	var warnings []string
	if len(dropped) > 0 {
		warnings = append(warnings, "ADO.NET keys with no pgx counterpart dropped: "+strings.Join(dropped, ", "))
	}
	return strings.Join(out, " "), warnings, nil
}

// adoSegment is one Key=Value pair of an ADO.NET string, key normalised.
type adoSegment struct{ key, value string }

// adoPair reads one pair up to the next ';' outside quotes. Its error says what is wrong
// with the value, without quoting it.
func adoPair(t string) (adoSegment, string, error) {
	end := strings.IndexByte(t, ';')
	eq := strings.IndexByte(t, '=')
	if eq < 0 || (end >= 0 && end < eq) {
		seg, rest := t, ""
		if end >= 0 {
			seg, rest = t[:end], t[end+1:]
		}
		if strings.TrimSpace(seg) == "" {
			return adoSegment{}, rest, nil
		}
		return adoSegment{}, "", fmt.Errorf("is followed by text without '=' (a raw ';' in the value?)")
	}
	key := adoKey(t[:eq])
	v := strings.TrimLeft(t[eq+1:], " \t")
	if v != "" && (v[0] == '"' || v[0] == '\'') {
		q := v[0]
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			if v[i] != q {
				b.WriteByte(v[i])
				continue
			}
			if i+1 < len(v) && v[i+1] == q {
				b.WriteByte(q)
				i++
				continue
			}
			rest := strings.TrimLeft(v[i+1:], " \t")
			if rest != "" && rest[0] != ';' {
				return adoSegment{}, "", fmt.Errorf("has text after its closing quote")
			}
			return adoSegment{key, b.String()}, strings.TrimPrefix(rest, ";"), nil
		}
		return adoSegment{}, "", fmt.Errorf("has no closing quote")
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		return adoSegment{key, strings.TrimSpace(v[:i])}, v[i+1:], nil
	}
	return adoSegment{key, strings.TrimSpace(v)}, "", nil
}

// adoSSLMode maps Npgsql's SSL Mode values to libpq's.
func adoSSLMode(v string) (string, bool) {
	switch strings.ToLower(strings.ReplaceAll(v, "-", "")) {
	case "disable":
		return "disable", true
	case "allow":
		return "allow", true
	case "prefer":
		return "prefer", true
	case "require":
		return "require", true
	case "verifyca":
		return "verify-ca", true
	case "verifyfull":
		return "verify-full", true
	}
	return "", false
}

// quoteKV quotes a keyword/value value, escaping backslashes and single quotes.
func quoteKV(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
