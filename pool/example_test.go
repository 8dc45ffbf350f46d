package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

// A service's start-up: configuration from DATABASE_URL or the DB_* variables, warnings logged,
// and a pool that has verified it can reach the database.
func ExampleNew() {
	cfg, err := config.FromEnv()
	if err != nil {
		log.Fatal(err) // names what is missing or wrong, never the password
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}
	p, err := pool.New(context.Background(), cfg, pool.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	http.Handle("/debug/pool", p.DebugHandler()) // behind your authentication
}

// Reads go through Idempotent, so that a connection lost mid-query is retried too.
func ExamplePool_Idempotent() {
	ctx := context.Background()
	p := examplePool()
	defer p.Close()

	var number string
	err := p.Idempotent().QueryRow(ctx, "SELECT numero FROM permis WHERE id = $1", 42).Scan(&number)
	if errors.Is(err, pgx.ErrNoRows) {
		fmt.Println("no such licence")
	}
}

// A write that must happen once: Tx retries the whole function when the transaction provably
// did not commit, and says so when a lost COMMIT leaves the outcome unknown.
func ExamplePool_Tx() {
	ctx := context.Background()
	p := examplePool()
	defer p.Close()

	err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO permis (numero, idempotency_key) VALUES ($1, $2)", "A123", "key-1")
		return err
	})
	var ambiguous *pool.AmbiguousCommitError
	switch {
	case errors.As(err, &ambiguous):
		// Look the idempotency key up before trying again.
	case errors.Is(err, pool.ErrPoolTimeout):
		// The pool was exhausted, or the database down: the error text says which.
	case err != nil:
		log.Print(err)
	}
}

func examplePool() *pool.Pool {
	cfg, err := config.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	p, err := pool.New(context.Background(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	return p
}
