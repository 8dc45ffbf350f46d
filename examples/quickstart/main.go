// Command quickstart is the shortest useful pgsteady program: it builds a pool from the
// environment, runs a read that is retried even after a lost connection, runs a transaction
// that is retried as a whole, and prints the pool's statistics.
//
//	DATABASE_URL='postgres://user:password@host/db?sslmode=require' go -C examples run ./quickstart
//
// The seed's DB_USER, DB_PASSWORD, DB_HOST, DB_PORT, DB_NAME and DB_SSLMODE work too. With none
// of them it runs on the same disposable PostgreSQL as docapi (in Docker, else from the
// PostgreSQL binaries on this machine), removed on exit. That comes from embedded.go, which
// imports this repository's test harness: a copy outside the repository deletes that file and
// sets DATABASE_URL.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// startEmbedded starts a disposable PostgreSQL when env configures no database; embedded.go
// sets it (see the package documentation).
var startEmbedded func(ctx context.Context, env func(string) string, out io.Writer) (*config.Config, func(), error)

// databaseConfig is the disposable database's config when one starts, else the environment's,
// and a function that removes what it started.
func databaseConfig(ctx context.Context, env func(string) string, out io.Writer) (*config.Config, func(), error) {
	if startEmbedded != nil {
		if cfg, cleanup, err := startEmbedded(ctx, env, out); cfg != nil || err != nil {
			return cfg, cleanup, err
		}
	}
	cfg, err := config.FromEnv() // DATABASE_URL, or DB_*; Neon-ready defaults
	return cfg, func() {}, err
}

func run(ctx context.Context, env func(string) string, out io.Writer) error {
	cfg, cleanup, err := databaseConfig(ctx, env, out)
	if err != nil {
		return err
	}
	defer cleanup()
	p, err := pool.New(ctx, cfg) // fails here if the database cannot be reached
	if err != nil {
		return err
	}
	defer p.Close()

	// A read may run twice harmlessly, so it is retried even when the connection drops mid-query.
	var version string
	if err := p.Idempotent().QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return err
	}
	fmt.Fprintln(out, "connected to", version)

	// A write that must happen once: the function is retried whole when the transaction
	// cannot have committed (lost connection, serialization failure).
	var visits int64
	err = p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS quickstart_visits (id int PRIMARY KEY, n bigint NOT NULL)`); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `INSERT INTO quickstart_visits VALUES (1, 1)
			ON CONFLICT (id) DO UPDATE SET n = quickstart_visits.n + 1 RETURNING n`).Scan(&visits)
	})
	var ambiguous *pool.AmbiguousCommitError
	if errors.As(err, &ambiguous) {
		return fmt.Errorf("the connection dropped during COMMIT: this visit may or may not be counted: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "visits:", visits)

	stats, _ := json.MarshalIndent(p.Stats(), "", "  ")
	fmt.Fprintf(out, "pool: %s\n", stats)
	return nil
}
