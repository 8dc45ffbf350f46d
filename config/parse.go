package config

import (
	"errors"
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
	connString, warning := dropDriver(connString)
	d, err := parseDSN(connString)
	if errors.Is(err, errRawAt) {
		return nil, d.secrets().redactError(&Error{Field: "connection string", Value: d.redacted(),
			Limit: "a URL with each '@' in the user name or password written as %40"})
	}
	if err != nil {
		// The string does not split; let pgx say why (its error does not quote the string
		// here: we replace it).
		sec := d.secrets()
		_, perr := pgconn.ParseConfig(connString)
		if perr == nil {
			perr = errors.New("invalid connection string")
		}
		return nil, parseError(perr, "…", sec)
	}
	var warnings []string
	if warning != "" {
		warnings = append(warnings, warning)
		if v, ok := d.sslAsSSLMode(); ok {
			warnings = append(warnings, "ssl="+v+" read as sslmode="+v+" (asyncpg's spelling; pgx reads ssl only as ssl=true)")
		}
	}
	sec := d.secrets()
	c, err := parse(d, &sec)
	if err != nil {
		return nil, sec.redactError(err)
	}
	c.Warnings = append(warnings, c.Warnings...)
	return c, nil
}

// dropDriver turns a SQLAlchemy URL's postgresql+driver:// scheme into postgresql:// and
// returns a warning saying so, or s unchanged and "".
func dropDriver(s string) (string, string) {
	rest, ok := strings.CutPrefix(s, "postgresql+")
	if !ok {
		return s, ""
	}
	driver, rest, ok := strings.Cut(rest, "://")
	if !ok || driver == "" || strings.TrimLeft(driver, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return s, ""
	}
	return "postgresql://" + rest, "postgresql+" + driver + ":// read as postgresql:// (+" + driver +
		" names a Python driver for SQLAlchemy; pgx needs none)"
}

func parse(d *dsn, sec *secrets) (*Config, error) {
	c := defaults()
	st := &state{}
	if err := c.applyKeys(d, st); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(d.String())
	if err != nil {
		return nil, parseError(err, d.redacted(), *sec)
	}
	sec.add(pc.ConnConfig.Password)
	hosts := hostsOf(&pc.ConnConfig.Config)
	if !st.poolerGiven && behindTransactionPooler(hosts) {
		c.Pooler = PoolerTransaction
	}
	if hosts, err = requireTLS(d, hosts); err != nil {
		return nil, parseError(err, d.redacted(), *sec)
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
