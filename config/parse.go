package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Parse reads a connection string, a postgres:// or postgresql:// URL or a keyword/value
// string, and returns a validated Config holding the defaults, the pool options found in the
// string, and the rest of the string for pgx. Pieces the string lacks are taken the way pgx
// takes them: from the PG* environment variables (PGHOST, PGUSER, PGPASSWORD, PGSSLMODE, ...)
// and libpq's defaults; Parse("") takes everything from there. A URL whose scheme names a
// Python driver, as SQLAlchemy writes them (postgresql+psycopg2://, postgresql+psycopg://,
// postgresql+asyncpg://), is read as postgresql://, with a warning; in such a URL, ssl=require
// (asyncpg's spelling, any libpq sslmode value) is read as sslmode=require. See the package
// documentation for the keys it reads and what it changes.
//
// Every problem is an *[Error] naming the key, the value and the limit; no error contains the
// password.
func Parse(connString string) (*Config, error) {
	conn, warnings, err := unpaste(connString)
	if err != nil {
		return nil, err // it quotes nothing
	}
	d, err := parseDSN(conn)
	var kvErr *kvSyntaxError
	switch {
	case errors.Is(err, errRawAt):
		// The string is not shown: what pgx would take for the host is the password's rest.
		return nil, &Error{Field: "connection string",
			Limit: "a URL with each '@' in the user name or password written as %40"}
	case errors.As(err, &kvErr):
		return nil, kvError(kvErr)
	case err != nil:
		// A URL that does not split: let pgx say why, in words of its own only.
		sec := d.secrets()
		_, perr := pgconn.ParseConfig(conn)
		if perr == nil {
			perr = errors.New("invalid connection string")
		}
		return nil, parseError(perr, sec)
	}
	if err := swallowedSecret(d); err != nil {
		return nil, err
	}
	if v, ok := d.sslAsSSLMode(); ok {
		warnings = append(warnings, "ssl="+v+" read as sslmode="+v+" (asyncpg's spelling; pgx reads ssl only as ssl=true)")
	}
	sec := d.secrets()
	converted, err := convertForeign(d)
	if err != nil {
		return nil, sec.redactError(err)
	}
	c, err := parse(d, &sec)
	if err != nil {
		return nil, sec.redactError(err)
	}
	c.Warnings = append(append(warnings, converted...), c.Warnings...)
	return c, nil
}

// kvError is the error for a keyword/value string that does not split: it names the
// position and the key before it, or, after a password, the password.
func kvError(e *kvSyntaxError) error {
	if e.afterSecret {
		return &Error{Field: e.after, Err: fmt.Errorf("%s follows its value (byte %d); %s", e.what, e.pos, quoteHint)}
	}
	where := fmt.Sprintf("at byte %d", e.pos)
	if e.after != "" && knownKey(e.after) {
		where += ", after " + e.after
	}
	return &Error{Field: "connection string", Err: fmt.Errorf("%s %s", e.what, where)}
}

func parse(d *dsn, sec *secrets) (*Config, error) {
	c := defaults()
	st := &state{}
	if err := c.applyKeys(d, st); err != nil {
		return nil, err
	}
	if err := checkKeys(d); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(d.String())
	if err != nil {
		return nil, parseError(err, *sec)
	}
	sec.add(pc.ConnConfig.Password)
	if isPlaceholder(pc.ConnConfig.Password) {
		return nil, placeholderError("password")
	}
	hosts := hostsOf(&pc.ConnConfig.Config)
	if !st.poolerGiven && behindTransactionPooler(hosts) {
		c.Pooler = PoolerTransaction
	}
	if hosts, err = requireTLS(d, hosts); err != nil {
		return nil, parseError(err, *sec)
	}
	st.insecure = insecure(hosts)

	if pc.ConnConfig.ConnectTimeout > 0 {
		c.ConnectTimeout = pc.ConnConfig.ConnectTimeout
	}
	st.execMode, _ = d.lookup("default_query_exec_mode")
	st.conn = d.String()
	st.shown = d.redacted()
	st.secrets = *sec
	c.st = st
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// swallowedSecret refuses a keyword/value pair whose value took a password pair in (an
// empty value takes the next word: "user= password=x" is user="password=x" to libpq, and
// so does a backslash before the space; an ADO.NET value opened by a stray quote takes
// ";Password=x;" in): the password would be sent and shown as that key's value.
func swallowedSecret(d *dsn) error {
	if d.url {
		return nil
	}
	for _, p := range d.params {
		if !isSecretKey(p.key) && strings.Contains(strings.ToLower(p.value), "password=") {
			return &Error{Field: p.key, Err: errors.New("its value holds a password=... pair (an empty value, or a backslash before a space, " +
				"takes the next word in); write " + p.key + "='...' or remove it")}
		}
	}
	return nil
}
