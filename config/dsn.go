package config

import (
	"errors"
	"strings"
)

// This file splits a connection string into its parameters so that pgsteady's own keys can be
// read and removed, and puts the rest back together byte for byte. The grammar follows pgconn's
// parsers (pgconn/parse_url.go and parseKeywordValueSettings in pgconn/config.go, v5.13), which
// follow libpq: a key read here is exactly the key pgx would have read, so a value hidden in a
// quoted password can never be taken for a pool option. Anything this code does not understand
// is left in place for pgx to reject.

// dsnParam is one key=value pair of a connection string.
type dsnParam struct {
	key      string // decoded key, as pgx would see it ("dbname" stays "dbname")
	value    string // decoded value
	raw      string // the pair as written, re-emitted unchanged when kept
	badValue bool   // URL pair whose key decodes but whose value does not (pgx rejects it)
}

// dsn is a connection string split into parameters.
type dsn struct {
	url bool
	// URL form: everything before the query, with the userinfo password (if any) cut out so
	// that the redacted form can be produced: base = prefix + rawPassword + suffix.
	prefix, suffix string
	hasPassword    bool
	rawPassword    string
	params         []dsnParam
}

// errDSNSyntax means the string could not be split; pgx gives the precise reason.
var errDSNSyntax = errors.New("connection string syntax")

func isURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// parseDSN splits s. The empty string is a keyword/value string without parameters.
func parseDSN(s string) (*dsn, error) {
	if isURL(s) {
		return parseURLDSN(s)
	}
	return parseKVDSN(s)
}

func parseURLDSN(s string) (*dsn, error) {
	d := &dsn{url: true}
	scheme := "postgresql://"
	if !strings.HasPrefix(s, scheme) {
		scheme = "postgres://"
	}
	p := s[len(scheme):]
	head := scheme
	// Like libpq, only '/' stops the search for the userinfo terminator.
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		user, password, has := strings.Cut(p[:i], ":")
		if has {
			d.hasPassword = true
			d.rawPassword = password
			head += user + ":"
		} else {
			head += user
		}
		p = p[i:]
	}
	// p now starts at "@" (after a userinfo) or at the host list.
	q := queryStart(p)
	if q < 0 {
		d.prefix, d.suffix = head, p
		return d, nil
	}
	d.prefix, d.suffix = head, p[:q]
	query := p[q+1:]
	var err error
	for query != "" {
		pair := query
		if i := strings.IndexByte(query, '&'); i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			query = ""
		}
		rawKey, rawValue, found := strings.Cut(pair, "=")
		key, kerr := uriDecode(rawKey)
		if !found || strings.IndexByte(rawValue, '=') >= 0 || kerr != nil {
			// pgx refuses the whole string; keep reading for the passwords to redact.
			err = errDSNSyntax
			continue
		}
		prm := dsnParam{key: key, raw: pair}
		var verr error
		prm.value, verr = uriDecode(rawValue)
		prm.badValue = verr != nil
		d.params = append(d.params, prm)
	}
	return d, err
}

// queryStart returns the index of the '?' that starts the query in p (the part of a URL after
// the userinfo, starting with '@' if there was one), or -1. It walks the host list as pgconn
// does, so a '?' inside an IPv6 bracket is not taken for the query.
func queryStart(p string) int {
	i := 0
	if strings.HasPrefix(p, "@") {
		i = 1
	}
	for {
		if i < len(p) && p[i] == '[' {
			end := strings.IndexByte(p[i:], ']')
			if end < 0 {
				return -1 // pgx rejects it
			}
			i += end + 1
		} else {
			j := strings.IndexAny(p[i:], ":/?,")
			if j < 0 {
				return -1
			}
			i += j
		}
		if i < len(p) && p[i] == ':' {
			j := strings.IndexAny(p[i:], "/?,")
			if j < 0 {
				return -1
			}
			i += j
		}
		if i < len(p) && p[i] == ',' {
			i++
			continue
		}
		break
	}
	if i < len(p) && p[i] == '/' {
		j := strings.IndexByte(p[i:], '?')
		if j < 0 {
			return -1
		}
		return i + j
	}
	if i < len(p) && p[i] == '?' {
		return i
	}
	return -1
}

// uriDecode follows pgconn's uriDecode: leading and trailing spaces skipped, interior raw
// spaces refused, %XX decoded, %00 refused. Its errors never quote the input.
func uriDecode(raw string) (string, error) {
	raw = strings.Trim(raw, " ")
	if strings.IndexByte(raw, ' ') >= 0 {
		return "", errDSNSyntax
	}
	if strings.IndexByte(raw, '%') < 0 {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] != '%' {
			b.WriteByte(raw[i])
			continue
		}
		if i+2 >= len(raw) {
			return "", errDSNSyntax
		}
		hi, ok1 := unhex(raw[i+1])
		lo, ok2 := unhex(raw[i+2])
		if !ok1 || !ok2 || hi<<4|lo == 0 {
			return "", errDSNSyntax
		}
		b.WriteByte(hi<<4 | lo)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const kvSpace = " \t\n\r\v\f"

func isKVSpace(c byte) bool { return strings.IndexByte(kvSpace, c) >= 0 }

// parseKVDSN follows pgconn's parseKeywordValueSettings, recording each pair's raw text.
func parseKVDSN(s string) (*dsn, error) {
	d := &dsn{} // returned with errors too, so that the passwords read so far can be redacted
	if strings.IndexByte(s, 0) >= 0 {
		return d, errDSNSyntax
	}
	s = strings.TrimLeft(s, kvSpace)
	for len(s) > 0 {
		start := s
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return d, errDSNSyntax
		}
		key := strings.Trim(s[:eq], kvSpace)
		if key == "" || strings.ContainsAny(key, kvSpace) {
			return d, errDSNSyntax
		}
		s = strings.TrimLeft(s[eq+1:], kvSpace)
		var val string
		switch {
		case len(s) == 0:
		case s[0] != '\'':
			end := 0
			for ; end < len(s); end++ {
				if isKVSpace(s[end]) {
					break
				}
				if s[end] == '\\' {
					end++
					if end == len(s) {
						break
					}
				}
			}
			val = unescapeKV(s[:end])
			s = s[end:]
		default:
			s = s[1:]
			end := 0
			for ; end < len(s); end++ {
				if s[end] == '\'' {
					break
				}
				if s[end] == '\\' {
					end++
					if end == len(s) {
						return d, errDSNSyntax
					}
				}
			}
			if end == len(s) {
				return d, errDSNSyntax
			}
			val = unescapeKV(s[:end])
			s = s[end+1:]
		}
		raw := start[:len(start)-len(s)]
		d.params = append(d.params, dsnParam{key: key, value: val, raw: raw})
		s = strings.TrimLeft(s, kvSpace)
	}
	return d, nil
}

// unescapeKV drops each backslash and keeps the byte after it, as libpq does.
func unescapeKV(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// canonicalKey is the key under which pgx stores a parameter.
func canonicalKey(k string) string {
	if k == "dbname" {
		return "database"
	}
	return k
}

// lookup returns the value of the last occurrence of key, as pgx would use it.
func (d *dsn) lookup(key string) (string, bool) {
	for i := len(d.params) - 1; i >= 0; i-- {
		p := d.params[i]
		if !p.badValue && canonicalKey(p.key) == key {
			return p.value, true
		}
	}
	return "", false
}

// take removes every occurrence of key and returns the last value (last one wins, as in pgx).
// bad reports that the last occurrence's value is not valid percent-encoding.
func (d *dsn) take(key string) (value string, ok, bad bool) {
	kept := d.params[:0]
	for _, p := range d.params {
		if p.key == key {
			value, ok, bad = p.value, true, p.badValue
			continue
		}
		kept = append(kept, p)
	}
	d.params = kept
	return value, ok, bad
}

// has reports whether key is present.
func (d *dsn) has(key string) bool {
	for _, p := range d.params {
		if canonicalKey(p.key) == key {
			return true
		}
	}
	return false
}

// add appends key=value; value must need no quoting or escaping.
func (d *dsn) add(key, value string) {
	d.params = append(d.params, dsnParam{key: key, value: value, raw: key + "=" + value})
}

// String returns the connection string with the remaining parameters.
func (d *dsn) String() string { return d.render(false) }

// redacted returns the connection string with every password masked.
func (d *dsn) redacted() string { return d.render(true) }

func (d *dsn) render(redact bool) string {
	var b strings.Builder
	if d.url {
		b.WriteString(d.prefix)
		if d.hasPassword {
			if redact && d.rawPassword != "" {
				b.WriteString(redactedMask)
			} else {
				b.WriteString(d.rawPassword)
			}
		}
		b.WriteString(d.suffix)
		for i, p := range d.params {
			if i == 0 {
				b.WriteByte('?')
			} else {
				b.WriteByte('&')
			}
			if redact && isSecretKey(p.key) {
				b.WriteString(p.key + "=" + redactedMask)
			} else {
				b.WriteString(p.raw)
			}
		}
		return b.String()
	}
	for i, p := range d.params {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case redact && isSecretKey(p.key):
			b.WriteString(p.key + "=" + redactedMask)
		case p.value == "":
			// An empty unquoted value takes the next pair as its value ("a= b=c" is a="b=c"),
			// so one written last must be quoted before anything is appended after it.
			b.WriteString(p.key + "=''")
		default:
			b.WriteString(p.raw)
		}
	}
	return b.String()
}

func isSecretKey(k string) bool { return k == "password" || k == "sslpassword" }

// secrets returns the passwords written in the connection string, decoded and as written.
func (d *dsn) secrets() secrets {
	var s secrets
	if d.hasPassword {
		s.add(d.rawPassword)
		if v, err := uriDecode(d.rawPassword); err == nil {
			s.add(v)
		}
	}
	for _, p := range d.params {
		if isSecretKey(p.key) {
			s.add(p.value, p.raw)
			if _, v, ok := strings.Cut(p.raw, "="); ok {
				s.add(strings.Trim(v, kvSpace+"'"))
			}
		}
	}
	return s
}
