package config

import (
	"errors"
	"fmt"
	"slices"
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
	// afterSecret: the pair follows a password or sslpassword pair. An unknown key there is
	// likely the rest of a password written with a raw space or '&', so errors never name it.
	afterSecret bool
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
	var rawAt bool
	// Like libpq, only '/' stops the search for the userinfo terminator.
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		if j := lastUserinfoAt(p, i); j > i {
			i, rawAt = j, true
		}
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
		return d, rawAtError(rawAt, nil)
	}
	d.prefix, d.suffix = head, p[:q]
	err := d.parseQuery(p[q+1:])
	return d, rawAtError(rawAt, err)
}

// errRawAt means the host list of a URL holds a '@': a user name or password with a raw '@'
// that libpq and pgx cut at the first '@', reading the rest as the host. The dsn returned
// with it is split at the last '@' instead, as the writer meant, so that its redacted form
// masks the whole password.
var errRawAt = errors.New("raw @ in the user name or password")

func rawAtError(rawAt bool, err error) error {
	if rawAt {
		return errRawAt
	}
	return err
}

// lastUserinfoAt returns the index of the last '@' in the host list that follows the '@' at
// p[at], or at when the host list holds none. No host name, address, port or socket
// directory holds a '@'; one there is the rest of a user name or password.
func lastUserinfoAt(p string, at int) int {
	hosts := p[at+1:]
	end, ok := hostListEnd(hosts)
	if !ok {
		return at
	}
	if j := strings.LastIndexByte(hosts[:end], '@'); j >= 0 {
		return at + 1 + j
	}
	return at
}

// parseQuery reads the key=value pairs of a URL's query.
func (d *dsn) parseQuery(query string) error {
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
		prm := dsnParam{key: key, raw: pair, afterSecret: d.lastIsSecret()}
		var verr error
		prm.value, verr = uriDecode(rawValue)
		prm.badValue = verr != nil
		d.params = append(d.params, prm)
	}
	return err
}

// queryStart returns the index of the '?' that starts the query in p (the part of a URL after
// the userinfo, starting with '@' if there was one), or -1. It walks the host list as pgconn
// does, so a '?' inside an IPv6 bracket is not taken for the query.
func queryStart(p string) int {
	start := 0
	if strings.HasPrefix(p, "@") {
		start = 1
	}
	end, ok := hostListEnd(p[start:])
	if !ok {
		return -1 // pgx rejects it
	}
	i := start + end
	switch {
	case i == len(p):
		return -1
	case p[i] == '?':
		return i
	case p[i] == '/':
		if j := strings.IndexByte(p[i:], '?'); j >= 0 {
			return i + j
		}
	}
	return -1
}

// hostListEnd returns the length of the comma-separated host[:port] list at the start of p,
// walked as pgconn walks it; ok is false when a '[' is not closed (pgx rejects that).
func hostListEnd(p string) (end int, ok bool) {
	for {
		n, ok := netlocEnd(p[end:])
		if !ok {
			return 0, false
		}
		end += n
		if end < len(p) && p[end] == ',' {
			end++
			continue
		}
		return end, true
	}
}

// netlocEnd returns the length of the host[:port] at the start of p.
func netlocEnd(p string) (int, bool) {
	i := indexOrLen(p, ":/?,")
	if strings.HasPrefix(p, "[") {
		end := strings.IndexByte(p, ']')
		if end < 0 {
			return 0, false
		}
		i = end + 1
	}
	if i < len(p) && p[i] == ':' {
		i += indexOrLen(p[i:], "/?,")
	}
	return i, true
}

// indexOrLen returns the index of the first byte of s in chars, or len(s).
func indexOrLen(s, chars string) int {
	if i := strings.IndexAny(s, chars); i >= 0 {
		return i
	}
	return len(s)
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

// lastIsSecret reports whether the last pair read is a password or sslpassword.
func (d *dsn) lastIsSecret() bool {
	return len(d.params) > 0 && isSecretKey(d.params[len(d.params)-1].key)
}

// kvSyntaxError says where a keyword/value string stops making sense: the byte offset and
// the key read before it. It never quotes the string.
type kvSyntaxError struct {
	pos         int
	what        string
	after       string // the key before the fault, "" at the start
	afterSecret bool   // that key is a password
}

func (e *kvSyntaxError) Error() string { return e.what }

// Is makes a kvSyntaxError match errDSNSyntax.
func (e *kvSyntaxError) Is(target error) bool { return target == errDSNSyntax }

// parseKVDSN follows pgconn's parseKeywordValueSettings, recording each pair's raw text.
func parseKVDSN(s string) (*dsn, error) {
	d := &dsn{} // returned with errors too, so that the passwords read so far can be redacted
	whole := s
	fail := func(rest, what string) (*dsn, error) {
		e := &kvSyntaxError{pos: len(whole) - len(rest), what: what, afterSecret: d.lastIsSecret()}
		if len(d.params) > 0 {
			e.after = d.params[len(d.params)-1].key
		}
		return d, e
	}
	if i := strings.IndexByte(s, 0); i >= 0 {
		return fail(s[i:], "a NUL byte")
	}
	s = strings.TrimLeft(s, kvSpace)
	for len(s) > 0 {
		start := s
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return fail(s, "a word without '=' after it")
		}
		key := strings.Trim(s[:eq], kvSpace)
		if key == "" {
			return fail(s, "an '=' without a key before it")
		}
		if strings.ContainsAny(key, kvSpace) {
			return fail(s, "a word without '=' after it")
		}
		val, rest, err := scanKVValue(strings.TrimLeft(s[eq+1:], kvSpace))
		if err != nil {
			return fail(s, "a quoted value without its closing quote")
		}
		s = rest
		raw := start[:len(start)-len(s)]
		d.params = append(d.params, dsnParam{key: key, value: val, raw: raw, afterSecret: d.lastIsSecret()})
		s = strings.TrimLeft(s, kvSpace)
	}
	return d, nil
}

// scanKVValue reads one value at the start of s, quoted or not, and returns it unescaped
// with the rest of s.
func scanKVValue(s string) (val, rest string, err error) {
	if s == "" {
		return "", "", nil
	}
	if s[0] != '\'' {
		end := 0
		for ; end < len(s) && !isKVSpace(s[end]); end++ {
			if s[end] == '\\' {
				end++
				if end == len(s) {
					break
				}
			}
		}
		return unescapeKV(s[:end]), s[end:], nil
	}
	s = s[1:]
	for end := 0; end < len(s); end++ {
		switch s[end] {
		case '\'':
			return unescapeKV(s[:end]), s[end+1:], nil
		case '\\':
			end++
		}
	}
	return "", "", errDSNSyntax // no closing quote, or a backslash at the end
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

// sslModes are libpq's sslmode values, weakest first: the one list an sslmode given outside a
// connection string (ssl=, DB_SSLMODE) is checked against.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// sslAsSSLMode turns a URL's ssl=<sslmode value> (asyncpg's spelling, which SQLAlchemy URLs
// for asyncpg carry) into sslmode=<value> when no sslmode key is given, and returns the value.
// ssl=true, pgx's own alias for sslmode=require, and other values are left alone.
func (d *dsn) sslAsSSLMode() (string, bool) {
	if !d.url || d.has("sslmode") {
		return "", false
	}
	v, ok := d.lookup("ssl")
	switch {
	case !ok:
		return "", false
	case slices.Contains(sslModes, v):
	default:
		return "", false
	}
	d.take("ssl")
	d.add("sslmode", v)
	return v, true
}

// addEncoded appends key=value, value quoted or percent-encoded as the form needs.
func (d *dsn) addEncoded(key, value string) {
	raw := key + "=" + quoteKV(value)
	if d.url {
		var b strings.Builder
		for i := 0; i < len(value); i++ {
			c := value[i]
			if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		raw = key + "=" + b.String()
	}
	d.params = append(d.params, dsnParam{key: key, value: value, raw: raw})
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
	if d.url {
		return d.renderURL(redact)
	}
	return d.renderKV(redact)
}

func (d *dsn) renderURL(redact bool) string {
	var b strings.Builder
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

func (d *dsn) renderKV(redact bool) string {
	var b strings.Builder
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
	if isURL(b.String()) {
		// A first key that starts like a URL (" postgres://?=0" is the key "postgres://?")
		// stays a keyword/value string only behind the space it was written after.
		return " " + b.String()
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
