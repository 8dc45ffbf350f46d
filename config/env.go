package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The DB_* variables FromEnv reads, in the order they are reported.
var dbVars = []string{"DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE"}

// dbOptionVars are the DB_* variables that carry a connection string key, for those who
// configure a service through the environment only.
var dbOptionVars = []struct{ name, key string }{
	{"DB_POOL_SIZE", keyPoolSize},
	{"DB_MAX_OVERFLOW", keyMaxOverflow},
	{"DB_POOL_TIMEOUT", "pool_timeout"},
	{"DB_POOL_RECYCLE", keyPoolRecycle},
	{"DB_POOL_PRE_PING", "pool_pre_ping"},
	{"DB_POOLER", keyPooler},
	{"DB_ALLOW_INSECURE", keyAllowInsecure},
}

// dbAliases are DB_* names other frameworks use (Laravel's DB_USERNAME and DB_DATABASE,
// ...), with the name FromEnv reads instead.
var dbAliases = map[string]string{
	"DB_USERNAME": "DB_USER", "DB_PASS": "DB_PASSWORD", "DB_PASSWD": "DB_PASSWORD", "DB_PWD": "DB_PASSWORD",
	"DB_DATABASE": "DB_NAME", "DB_DBNAME": "DB_NAME", "DB_HOSTNAME": "DB_HOST", "DB_SERVER": "DB_HOST",
	"DB_SSL_MODE": "DB_SSLMODE", "DB_SSL": "DB_SSLMODE", "DB_MAX_CONNS": "DB_POOL_SIZE and DB_MAX_OVERFLOW",
}

// dbNames lists every DB_* variable FromEnv reads.
func dbNames() []string {
	names := append([]string(nil), dbVars...)
	for _, v := range dbOptionVars {
		names = append(names, v.name)
	}
	return names
}

// FromEnv builds a Config from the environment, trying in order:
//
//  1. DATABASE_URL, when set and not empty: [Parse](DATABASE_URL). DB_* variables are then
//     ignored, with a warning if any is set.
//  2. The DB_* variables, when any of them is set and not empty: DB_HOST, DB_USER and
//     DB_NAME must be set and not empty, DB_PASSWORD must be set (empty means: no password
//     here, let PGPASSWORD or ~/.pgpass provide it), DB_PORT defaults to 5432 and
//     DB_SSLMODE to require. DB_HOST may carry the port (db.example.com:5433 or
//     [2001:db8::1]:5433); DB_PORT must then be unset or the same. They are put into a
//     properly escaped URL, which is then Parsed. These carry pool options, as the
//     connection string key named: DB_POOL_SIZE (pool_size), DB_MAX_OVERFLOW
//     (max_overflow), DB_POOL_TIMEOUT (pool_timeout), DB_POOL_RECYCLE (pool_recycle),
//     DB_POOL_PRE_PING (pool_pre_ping), DB_POOLER (pooler) and DB_ALLOW_INSECURE
//     (pgsteady_allow_insecure).
//     A missing variable is an *[Error] listing all the missing ones.
//  3. Otherwise PostgreSQL's own PG* variables, as pgx reads them: FromEnv is Parse(""),
//     provided PGHOST or PGSERVICE is set. With none of the three an *[Error] says so: a
//     service that forgot its database settings fails at start rather than trying a local
//     socket.
//
// Unless DATABASE_URL is used, a set DB_* variable that FromEnv does not read is an error
// wrapping [ErrUnknownKey] when it is close to one it reads or another framework's name
// for one (DB_USERNAME: did you mean DB_USER?), and a warning otherwise (DB_CONNECTION).
//
// In cases 1 and 2, PG* variables still fill the pieces the URL leaves out (PGAPPNAME,
// PGSSLROOTCERT, PGPASSWORD when DB_PASSWORD is empty, ...), as with Parse.
func FromEnv() (*Config, error) {
	var names []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "DB_") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	return fromEnv(os.LookupEnv, names)
}

// fromEnv is FromEnv reading variables through lookup; names lists the DB_* variables set.
func fromEnv(lookup func(string) (string, bool), names []string) (*Config, error) {
	get := func(k string) string { v, _ := lookup(k); return v }
	var setDB []string
	for _, k := range dbNames() {
		if get(k) != "" {
			setDB = append(setDB, k)
		}
	}

	if u := get("DATABASE_URL"); u != "" {
		c, err := Parse(u)
		if err != nil {
			return nil, err
		}
		if len(setDB) > 0 {
			c.Warnings = append(c.Warnings,
				"DATABASE_URL is set, so "+strings.Join(setDB, ", ")+" ignored")
		}
		return c, nil
	}

	unread, err := unreadDBVars(get, names)
	if err != nil {
		return nil, err
	}
	if len(setDB) > 0 {
		u, err := dbURL(lookup, setDB[0])
		if err != nil {
			return nil, err
		}
		c, err := Parse(u)
		if err != nil {
			return nil, dbError(err)
		}
		for _, k := range unread {
			c.Warnings = append(c.Warnings, k+" ignored (pgsteady does not read it)")
		}
		return c, nil
	}

	if get("PGHOST") == "" && get("PGSERVICE") == "" {
		return nil, &Error{Field: "DATABASE_URL",
			Limit: "set, or DB_HOST, DB_USER, DB_PASSWORD and DB_NAME, or PGHOST"}
	}
	return Parse("")
}

// unreadDBVars returns the set DB_* variables FromEnv does not read, or an error for the
// first one that is close to one it reads.
func unreadDBVars(get func(string) string, names []string) ([]string, error) {
	known := dbNames()
	var unread []string
	for _, k := range names {
		if get(k) == "" || slices.Contains(known, k) {
			continue
		}
		want, ok := dbAliases[k]
		if !ok {
			want = closest(k, known)
		}
		if want != "" {
			return nil, &Error{Field: k, Err: fmt.Errorf("%w; did you mean %s?", ErrUnknownKey, want)}
		}
		unread = append(unread, k)
	}
	return unread, nil
}

// closest returns the name in names closest to k, or "".
func closest(k string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(k, n); d < bestDist && d*3 <= len(k) {
			best, bestDist = n, d
		}
	}
	return best
}

// dbError renames the connection string key an error names to the DB_* variable that set
// it, and a fix through a connection string key to the DB_* variable that gives it.
func dbError(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	switch e.Field {
	case "sslmode":
		e.Field = "DB_SSLMODE"
	case "password":
		e.Field = "DB_PASSWORD"
	}
	for _, v := range dbOptionVars {
		if e.Field == v.key {
			e.Field = v.name
		}
		e.Limit = strings.ReplaceAll(e.Limit, v.key+"=true", v.name+"=true")
	}
	return err
}

// dbURL builds the URL from DB_* variables:
// postgres://DB_USER:DB_PASSWORD@DB_HOST:DB_PORT/DB_NAME?sslmode=DB_SSLMODE, every part
// escaped. trigger names a variable that is set, for the error message.
func dbURL(lookup func(string) (string, bool), trigger string) (string, error) {
	get := func(k string) string { v, _ := lookup(k); return v }
	var missing []string
	for _, k := range []string{"DB_USER", "DB_PASSWORD", "DB_HOST", "DB_NAME"} {
		v, ok := lookup(k)
		if !ok || (v == "" && k != "DB_PASSWORD") {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return "", &Error{Field: strings.Join(missing, ", "),
			Limit: "set when DB_* variables are used (" + trigger + " is set)"}
	}
	user, password, name := get("DB_USER"), get("DB_PASSWORD"), get("DB_NAME")
	host, port, err := dbHostPort(get("DB_HOST"), get("DB_PORT"))
	if err != nil {
		return "", err
	}
	sslmode := get("DB_SSLMODE")
	if sslmode == "" {
		sslmode = "require"
	}
	if !slices.Contains(sslModes, sslmode) {
		last := len(sslModes) - 1
		return "", &Error{Field: "DB_SSLMODE", Value: sslmode,
			Limit: strings.Join(sslModes[:last], ", ") + " or " + sslModes[last]}
	}

	q := url.Values{}
	for _, v := range dbOptionVars {
		if x := get(v.name); x != "" {
			q.Set(v.key, x)
		}
	}
	var b strings.Builder
	b.WriteString("postgres://")
	if password == "" {
		b.WriteString(url.User(user).String())
	} else {
		b.WriteString(url.UserPassword(user, password).String())
	}
	b.WriteByte('@')
	switch {
	case plainHost(host):
		b.WriteString(host + ":" + port)
	case isIPv6(host):
		b.WriteString(net.JoinHostPort(host, port))
	default:
		// A Unix socket directory or anything else a URL host cannot hold.
		q.Set("host", host)
		q.Set("port", port)
	}
	b.WriteByte('/')
	b.WriteString(url.PathEscape(name))
	q.Set("sslmode", sslmode)
	b.WriteByte('?')
	// url.Values.Encode writes a space as '+', which libpq's URI decoding keeps as '+'.
	b.WriteString(strings.ReplaceAll(q.Encode(), "+", "%20"))
	return b.String(), nil
}

// dbHostPort returns the host and port from DB_HOST and DB_PORT. A DB_HOST written as
// host:port or [IPv6]:port (as many platforms hand out a database address) is split; DB_PORT
// must then be unset, empty or the same port. DB_PORT defaults to 5432.
func dbHostPort(host, port string) (string, string, error) {
	portVar := "DB_PORT"
	if strings.Contains(host, "://") || strings.Contains(host, "@") {
		return "", "", formatError("DB_HOST", "a connection URL or user@host",
			"put a URL in DATABASE_URL, or only the host name in DB_HOST")
	}
	if h, p, ok := splitHostPort(host); ok {
		if port != "" && port != p {
			return "", "", &Error{Field: "DB_PORT", Value: port,
				Limit: "unset or " + p + ", the port given in DB_HOST"}
		}
		host, port, portVar = h, p, "DB_HOST"
	} else if strings.Contains(host, ":") && !isIPv6(host) && !strings.HasPrefix(host, "/") {
		return "", "", &Error{Field: "DB_HOST",
			Limit: "a host name or IP address, optionally followed by :port"}
	}
	if port == "" {
		port = "5432"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", &Error{Field: portVar, Limit: "a port number between 1 and 65535"}
	}
	return host, port, nil
}

// splitHostPort splits "host:port" or "[IPv6]:port" when port is all digits. A bare IPv6
// address (more than one ':' and no brackets) and a Unix socket directory are not split.
func splitHostPort(hostport string) (host, port string, ok bool) {
	if strings.HasPrefix(hostport, "/") {
		return "", "", false
	}
	h, p, err := net.SplitHostPort(hostport)
	if err != nil || h == "" || p == "" || strings.Trim(p, "0123456789") != "" {
		return "", "", false
	}
	return h, p, true
}

// plainHost reports whether host can sit in a URL as it is: a DNS name or IPv4 address.
func plainHost(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return host != ""
}

func isIPv6(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && strings.Contains(host, ":")
}
