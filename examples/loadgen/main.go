// Command loadgen is the seed's Locust test in Go: simulated users log in to docapi and then,
// with a think time between tasks, mostly list driving licences (GET /permis/all), sometimes
// list the other kinds or upload a card (a small PNG made in memory). At the end it prints
// requests per second, p50/p95/p99 latency per endpoint, and the errors grouped by endpoint,
// status and message. It exits with status 1 when any request failed.
//
//	go -C examples run ./loadgen -email demo@example.com -password '...' -users 50 -think-min 0 -think-max 0
//
// With -chaos and a superuser DSN, it also terminates every PostgreSQL client backend every
// -chaos-every (3s), and reports how many it killed: docapi's callers should still see no
// error. docapi prints its embedded database's superuser DSN when started with
// DOCAPI_PRINT_ADMIN_DSN=1 ("docapi: embedded database superuser postgres://..."), the same way
// whether that database runs in Docker or from the PostgreSQL binaries on the machine:
//
//	go -C examples run ./loadgen -email demo@example.com -password '...' -chaos 'postgres://postgres:...@127.0.0.1:.../postgres?sslmode=require'
//
// The -url (default http://127.0.0.1:8080) and the chaos DSN must point at a loopback address
// unless -allow-remote is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/pgsteady/pgsteady/examples/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args, runs the load and prints the report; it returns the exit status: 0 when
// every request succeeded, 1 when some failed, 2 for a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultConfig()
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", cfg.URL, "docapi's base URL")
	fs.StringVar(&cfg.Email, "email", os.Getenv("DOCAPI_USER_EMAIL"), "user e-mail (default $DOCAPI_USER_EMAIL)")
	fs.StringVar(&cfg.Password, "password", os.Getenv("DOCAPI_USER_PASSWORD"), "user password (default $DOCAPI_USER_PASSWORD)")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "concurrent users")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long to run")
	fs.DurationVar(&cfg.ThinkMin, "think-min", cfg.ThinkMin, "shortest pause between two tasks of a user")
	fs.DurationVar(&cfg.ThinkMax, "think-max", cfg.ThinkMax, "longest pause between two tasks of a user")
	fs.DurationVar(&cfg.Burst, "burst", 0, "when > 0, users fire together once per interval instead of thinking (the burst schedule: -users 40 -burst 500ms)")
	fs.StringVar(&cfg.ChaosDSN, "chaos", "", "superuser DSN: terminate all client backends during the run")
	fs.DurationVar(&cfg.ChaosEvery, "chaos-every", cfg.ChaosEvery, "interval between two chaos sweeps")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a -url or -chaos host that is not a loopback address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments %q\n", fs.Args())
		return 2
	}

	if cfg.Burst > 0 {
		fmt.Fprintf(stdout, "loadgen: %d users for %s against %s, firing together every %s",
			cfg.Users, cfg.Duration, cfg.URL, cfg.Burst)
	} else {
		fmt.Fprintf(stdout, "loadgen: %d users for %s against %s, think time %s to %s",
			cfg.Users, cfg.Duration, cfg.URL, cfg.ThinkMin, cfg.ThinkMax)
	}
	if cfg.ChaosDSN != "" {
		fmt.Fprintf(stdout, ", killing all backends every %s", cfg.ChaosEvery)
	}
	fmt.Fprintln(stdout)
	report, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	report.Print(stdout)
	if report.Failed() > 0 {
		return 1
	}
	return 0
}
