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

// A service with a primary and a read replica: writes and transactions go to the primary, reads
// through Replica go to the replica while it is healthy and within the lag bound, and a read
// that must see the request's own write asks for it with WithReadYourWrites.
func ExampleNewCluster() {
	ctx := context.Background()
	primary, err := config.Parse(os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	replica, err := config.Parse(os.Getenv("DATABASE_REPLICA_URL"))
	if err != nil {
		log.Fatal(err)
	}
	c, err := pool.NewCluster(ctx, primary, []*config.Config{replica}, pool.WithMaxReplayLag(1<<20))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx = pool.WithReadYourWrites(ctx)
	if _, err := c.Exec(ctx, "UPDATE permis SET statut = 'valide' WHERE id = $1", 42); err != nil {
		log.Fatal(err)
	}
	var statut string
	// Sees the update: a replica that has not replayed it yet is passed over for the primary.
	if err := c.Replica().QueryRow(ctx, "SELECT statut FROM permis WHERE id = $1", 42).Scan(&statut); err != nil {
		log.Fatal(err)
	}
	http.Handle("/debug/cluster", c.DebugHandler()) // roles, lag, reads served, per member
}
