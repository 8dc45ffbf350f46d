package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// startEmbedded starts the disposable database docapi uses when none is configured: in Docker
// when an engine answers, else a throwaway cluster from the PostgreSQL server binaries on this
// machine (see [pgharness.StartEmbedded]). It tells the user on stdout which one it started, and
// how long that took. When neither is there, the error names the three ways out.
func startEmbedded(ctx context.Context, stdout io.Writer) (pgharness.Database, error) {
	fmt.Fprintln(stdout, "docapi: no DATABASE_URL or DB_HOST: starting a disposable PostgreSQL "+
		"(in Docker, else from the PostgreSQL binaries on this machine; removed on exit)")
	start := time.Now()
	db, err := pgharness.StartEmbedded(ctx, func(note string) { fmt.Fprintln(stdout, "docapi: "+note) })
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("embedded database: start interrupted, nothing left behind: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded database: %w", err)
	}
	fmt.Fprintf(stdout, "docapi: embedded database: %s (started in %.1f s)\n", db, time.Since(start).Seconds())
	return db, nil
}
