package config

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// The DB_* variables FromEnv reads, in the order they are reported.
var dbVars = []string{"DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE"}

// FromEnv builds a Config from the environment, trying in order:
//
//  1. DATABASE_URL, when set and not empty: [Parse](DATABASE_URL). DB_* variables are then
//     ignored, with a warning if any is set.
//  2. The DB_* variables, when any of them is set and not empty: DB_HOST, DB_USER and
//     DB_NAME must be set and not empty, DB_PASSWORD must be set (empty means: no password
//     here, let PGPASSWORD or ~/.pgpass provide it), DB_PORT defaults to 5432 and
//     DB_SSLMODE to require. DB_HOST may carry the port (db.example.com:5433 or
//     [2001:db8::1]:5433); DB_PORT must then be unset or the same. They are put into a
//     properly escaped URL, which is then Parsed.
//     A missing variable is an *[Error] listing all the missing ones.
//  3. Otherwise PostgreSQL's own PG* variables, as pgx reads them: FromEnv is Parse(""),
//     provided PGHOST or PGSERVICE is set. With none of the three an *[Error] says so: a
//     service that forgot its database settings fails at start rather than trying a local
//     socket.
//
// In cases 1 and 2, PG* variables still fill the pieces the URL leaves out (PGAPPNAME,
// PGSSLROOTCERT, PGPASSWORD when DB_PASSWORD is empty, ...), as with Parse.
func FromEnv() (*Config, error) {
	return fromEnv(os.LookupEnv)
}

func fromEnv(lookup func(string) (string, bool)) (*Config, error) {
	get := func(k string) string { v, _ := lookup(k); return v }
	var setDB []string
	for _, k := range dbVars {
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

	if len(setDB) > 0 {
		u, err := dbURL(lookup, setDB[0])
		if err != nil {
			return nil, err
		}
		c, err := Parse(u)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Field == "sslmode" {
				e.Field = "DB_SSLMODE"
			}
			return nil, err
		}
		return c, nil
	}

	if get("PGHOST") == "" && get("PGSERVICE") == "" {
		return nil, &Error{Field: "DATABASE_URL",
			Limit: "set, or DB_HOST, DB_USER, DB_PASSWORD and DB_NAME, or PGHOST"}
	}
	return Parse("")
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
	switch sslmode {
	case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
	default:
		return "", &Error{Field: "DB_SSLMODE", Value: sslmode,
			Limit: "disable, allow, prefer, require, verify-ca or verify-full"}
	}

	q := url.Values{}
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
	if h, p, ok := splitHostPort(host); ok {
		if port != "" && port != p {
			return "", "", &Error{Field: "DB_PORT", Value: port,
				Limit: "unset or " + p + ", the port given in DB_HOST"}
		}
		host, port, portVar = h, p, "DB_HOST"
	} else if strings.Contains(host, ":") && !isIPv6(host) && !strings.HasPrefix(host, "/") {
		return "", "", &Error{Field: "DB_HOST", Value: host,
			Limit: "a host name or IP address, optionally followed by :port"}
	}
	if port == "" {
		port = "5432"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", &Error{Field: portVar, Value: port, Limit: "a port number between 1 and 65535"}
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
