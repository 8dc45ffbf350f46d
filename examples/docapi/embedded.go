// The disposable database docapi starts when none is configured. This is the one file of docapi
// that imports the repository's test harness: a copy of docapi outside the repository deletes
// it and runs against DATABASE_URL (or DB_*).

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

func init() { startEmbedded = startDisposable }

// startDisposable starts the disposable database docapi uses when env configures none: in
// Docker when an engine answers, else a throwaway cluster from the PostgreSQL server binaries on
// this machine (see [pgharness.StartEmbedded]). It tells the user on stdout which one it
// started, how long that took and how to connect (the superuser too with
// DOCAPI_PRINT_ADMIN_DSN). When neither is there, the error names the three ways out.
func startDisposable(ctx context.Context, env func(string) string, stdout io.Writer) (embeddedDB, error) {
	if pgharness.DatabaseConfigured(env) {
		return nil, nil
	}
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
	fmt.Fprintf(stdout, "docapi: embedded database %s\n", redact(db.DSN()))
	if env("DOCAPI_PRINT_ADMIN_DSN") != "" {
		fmt.Fprintf(stdout, "docapi: embedded database superuser %s\n", db.AdminDSN())
	}
	return db, nil
}
