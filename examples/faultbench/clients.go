package main

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib" // also database/sql driver "pgx"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

// The statements of the workload. whereSQL is the read of the failover fault: the same
// lookup by primary key, answering with the address the server saw the connection arrive at,
// which tells the old primary from the new one.
const (
	readSQL  = "SELECT v FROM kv WHERE k = $1"
	whereSQL = "SELECT inet_server_addr()::text FROM kv WHERE k = $1"
	writeSQL = "INSERT INTO writes (key) VALUES ($1)"
)

// clientKind is one of the three ways of reaching PostgreSQL that are compared.
type clientKind int

const (
	kindPgsteady clientKind = iota
	kindPgxpool
	kindDatabaseSQL
)

// clientKinds is every kind, in the order of the report.
var clientKinds = []clientKind{kindPgsteady, kindPgxpool, kindDatabaseSQL}

func (k clientKind) String() string {
	switch k {
	case kindPgsteady:
		return "pgsteady"
	case kindPgxpool:
		return "pgxpool"
	case kindDatabaseSQL:
		return "database/sql"
	}
	return fmt.Sprintf("clientKind(%d)", int(k))
}

func clientNames() []string {
	names := make([]string, len(clientKinds))
	for i, k := range clientKinds {
		names[i] = k.String()
	}
	return names
}

func clientByName(name string) (clientKind, bool) {
	for _, k := range clientKinds {
		if k.String() == name {
			return k, true
		}
	}
	return 0, false
}

// client runs the workload's statements. Its methods are safe for concurrent use.
type client interface {
	// read fetches the row with primary key k and returns the text the read statement
	// answered with.
	read(ctx context.Context, k int) (string, error)
	// write inserts a row with key.
	write(ctx context.Context, key string) error
	// stats describes what the client did behind its callers' backs, or is "".
	stats() string
	close()
}

// clientOptions are what a fault changes in how the clients are opened.
type clientOptions struct {
	// lookup, when not nil, resolves host names instead of the system's resolver (pgx's
	// ConnConfig.LookupFunc): the failover fault's stable name.
	lookup pgconn.LookupFunc
	// readSQL is the read statement; "" means readSQL.
	readSQL string
	// noResolve turns pgsteady's resolution of lost COMMITs off (-commit-resolution=false).
	noResolve bool
	// seedSettings gives database/sql the seed's SQLAlchemy pool settings (fault.seedSettings).
	seedSettings bool
}

// openClient opens a client of kind on dsn, each with its defaults.
func openClient(ctx context.Context, kind clientKind, dsn string, o clientOptions) (client, error) {
	read := o.readSQL
	if read == "" {
		read = readSQL
	}
	switch kind {
	case kindPgsteady:
		cfg, err := config.Parse(dsn)
		if err != nil {
			return nil, err
		}
		var opts []pool.Option
		if o.lookup != nil {
			opts = append(opts, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.LookupFunc = o.lookup }))
		}
		if o.noResolve {
			opts = append(opts, pool.WithoutCommitResolution())
		}
		p, err := pool.New(ctx, cfg, opts...)
		if err != nil {
			return nil, err
		}
		return pgsteadyClient{p, read}, nil
	case kindPgxpool:
		pc, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		if o.lookup != nil {
			pc.ConnConfig.LookupFunc = o.lookup
		}
		p, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, err
		}
		return pgxpoolClient{p, read}, nil
	case kindDatabaseSQL:
		if o.lookup == nil {
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				return nil, err
			}
			maxIdle := 2 // database/sql's default
			if o.seedSettings {
				maxIdle = 10
				db.SetMaxOpenConns(30)
				db.SetMaxIdleConns(maxIdle)
			}
			return sqlClient{db, read, maxIdle}, nil
		}
		// What sql.Open("pgx", dsn) does, with the lookup put in.
		cc, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		cc.LookupFunc = o.lookup
		return sqlClient{stdlib.OpenDB(*cc), read, 2}, nil
	}
	return nil, fmt.Errorf("unknown client %v", kind)
}

// pgsteadyClient reads through Idempotent (a read may run twice) and writes in Tx (an
// insert must not).
type pgsteadyClient struct {
	p       *pool.Pool
	readSQL string
}

func (c pgsteadyClient) read(ctx context.Context, k int) (string, error) {
	var v string
	err := c.p.Idempotent().QueryRow(ctx, c.readSQL, k).Scan(&v)
	return v, err
}

func (c pgsteadyClient) write(ctx context.Context, key string) error {
	return c.p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, writeSQL, key)
		return err
	})
}

func (c pgsteadyClient) stats() string {
	s := c.p.Stats()
	out := fmt.Sprintf("retries not-sent=%d conn-lost=%d conflict=%d, failed pings=%d, connections opened=%d destroyed=%d replaced idle=%d paced=%d",
		s.Retries.NotSent, s.Retries.ConnLost, s.Retries.Conflict, s.FailedPings, s.Opened, s.Destroyed, s.ReplacedIdle, s.Paced)
	out += fmt.Sprintf(", lost COMMITs resolved committed=%d aborted=%d, left ambiguous=%d", s.ResolvedCommitted, s.ResolvedAborted, s.AmbiguousCommits)
	if s.Failovers > 0 {
		out += fmt.Sprintf(", failovers confirmed=%d", s.Failovers)
	}
	if s.ReturnWaits > 0 {
		out += fmt.Sprintf(", acquires that waited for a connection to come back=%d", s.ReturnWaits)
	}
	if s.HedgedPings > 0 {
		out += fmt.Sprintf(", hedged pre-pings=%d", s.HedgedPings)
	}
	if s.IdleHorizon > 0 {
		out += fmt.Sprintf(", idle horizon %v", s.IdleHorizon)
	}
	return out
}

// resolution reports the pool's lost COMMITs resolved as committed and as aborted.
func (c pgsteadyClient) resolution() (committed, aborted int64) {
	s := c.p.Stats()
	return s.ResolvedCommitted, s.ResolvedAborted
}

func (c pgsteadyClient) close() { c.p.Close() }

type pgxpoolClient struct {
	p       *pgxpool.Pool
	readSQL string
}

func (c pgxpoolClient) read(ctx context.Context, k int) (string, error) {
	var v string
	err := c.p.QueryRow(ctx, c.readSQL, k).Scan(&v)
	return v, err
}

func (c pgxpoolClient) write(ctx context.Context, key string) error {
	_, err := c.p.Exec(ctx, writeSQL, key)
	return err
}

func (c pgxpoolClient) stats() string {
	s := c.p.Stat()
	return fmt.Sprintf("connections opened=%d (max %d)", s.NewConnsCount(), s.MaxConns())
}

func (c pgxpoolClient) close() { c.p.Close() }

type sqlClient struct {
	db      *sql.DB
	readSQL string
	maxIdle int
}

func (c sqlClient) read(ctx context.Context, k int) (string, error) {
	var v string
	err := c.db.QueryRowContext(ctx, c.readSQL, k).Scan(&v)
	return v, err
}

func (c sqlClient) write(ctx context.Context, key string) error {
	_, err := c.db.ExecContext(ctx, writeSQL, key)
	return err
}

func (c sqlClient) stats() string {
	s := c.db.Stats()
	return fmt.Sprintf("connections closed on return because %d were idle (MaxIdleConns)=%d", c.maxIdle, s.MaxIdleClosed)
}

func (c sqlClient) close() { c.db.Close() }
