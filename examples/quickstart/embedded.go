package main

import (
	"context"
	"fmt"
	"io"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// databaseConfig reads the database settings from the environment or, when none is set, starts
// the same disposable PostgreSQL as docapi (in Docker, else from the PostgreSQL binaries on this
// machine) and returns a function that removes it.
func databaseConfig(ctx context.Context, env func(string) string, out io.Writer) (*config.Config, func(), error) {
	if pgharness.DatabaseConfigured(env) {
		cfg, err := config.FromEnv() // DATABASE_URL, or DB_*; Neon-ready defaults
		return cfg, func() {}, err
	}
	fmt.Fprintln(out, "quickstart: no DATABASE_URL or DB_HOST: starting a disposable PostgreSQL (removed on exit)")
	db, err := pgharness.StartEmbedded(ctx, func(note string) { fmt.Fprintln(out, "quickstart: "+note) })
	if err != nil {
		return nil, nil, fmt.Errorf("embedded database: %w", err)
	}
	fmt.Fprintln(out, "quickstart: embedded database:", db)
	cfg, err := config.Parse(db.DSN())
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return cfg, func() { db.Close() }, nil
}
