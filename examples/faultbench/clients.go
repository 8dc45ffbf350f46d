package main

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

// The statements of the workload.
const (
	readSQL  = "SELECT v FROM kv WHERE k = $1"
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
	// read fetches the row with primary key k.
	read(ctx context.Context, k int) error
	// write inserts a row with key.
	write(ctx context.Context, key string) error
	// stats describes what the client did behind its callers' backs, or is "".
	stats() string
	close()
}

// openClient opens a client of kind on dsn, each with its defaults.
func openClient(ctx context.Context, kind clientKind, dsn string) (client, error) {
	switch kind {
	case kindPgsteady:
		cfg, err := config.Parse(dsn)
		if err != nil {
			return nil, err
		}
		p, err := pool.New(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return pgsteadyClient{p}, nil
	case kindPgxpool:
		p, err := pgxpool.New(ctx, dsn)
		if err != nil {
			return nil, err
		}
		return pgxpoolClient{p}, nil
	case kindDatabaseSQL:
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, err
		}
		return sqlClient{db}, nil
	}
	return nil, fmt.Errorf("unknown client %v", kind)
}

// pgsteadyClient reads through Idempotent (a read may run twice) and writes in Tx (an
// insert must not).
type pgsteadyClient struct{ p *pool.Pool }

func (c pgsteadyClient) read(ctx context.Context, k int) error {
	var v string
	return c.p.Idempotent().QueryRow(ctx, readSQL, k).Scan(&v)
}

func (c pgsteadyClient) write(ctx context.Context, key string) error {
	return c.p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, writeSQL, key)
		return err
	})
}

func (c pgsteadyClient) stats() string {
	s := c.p.Stats()
	return fmt.Sprintf("retries not-sent=%d conn-lost=%d conflict=%d, failed pings=%d, connections opened=%d destroyed=%d",
		s.Retries.NotSent, s.Retries.ConnLost, s.Retries.Conflict, s.FailedPings, s.Opened, s.Destroyed)
}

func (c pgsteadyClient) close() { c.p.Close() }

type pgxpoolClient struct{ p *pgxpool.Pool }

func (c pgxpoolClient) read(ctx context.Context, k int) error {
	var v string
	return c.p.QueryRow(ctx, readSQL, k).Scan(&v)
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

type sqlClient struct{ db *sql.DB }

func (c sqlClient) read(ctx context.Context, k int) error {
	var v string
	return c.db.QueryRowContext(ctx, readSQL, k).Scan(&v)
}

func (c sqlClient) write(ctx context.Context, key string) error {
	_, err := c.db.ExecContext(ctx, writeSQL, key)
	return err
}

func (c sqlClient) stats() string {
	s := c.db.Stats()
	return fmt.Sprintf("connections closed on return because 2 were idle (MaxIdleConns)=%d", s.MaxIdleClosed)
}

func (c sqlClient) close() { c.db.Close() }
