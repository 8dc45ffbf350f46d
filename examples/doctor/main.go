// Command doctor tells what stands between a service and its database, and what to change: the
// connection string as pgsteady reads it, the path (DNS, TCP, TLS, authentication, round trip),
// the server (version, standby, read-only, pooler, max_connections, timeouts) and advice, each
// finding ok, warn or fail. It changes nothing on the server. See package pool/doctor.
//
//	go -C examples run ./doctor "$DATABASE_URL"
//	go -C examples run ./doctor -replicas 8 -json "$DATABASE_URL"
//	go -C examples run ./doctor -watch 10m "$DATABASE_URL"
//
// Without an argument it reads the environment as config.FromEnv does (DATABASE_URL, the DB_*
// variables, or PG*); with none of them set, it starts the same disposable PostgreSQL as docapi
// and diagnoses that (embedded.go, which imports this repository's test harness: a copy outside
// the repository deletes that file). -watch then probes every -every (5 s) for the given time: a ping on a busy
// session, a connect and close, and a session left idle ever longer, printing each probe and
// each fault with the class pgsteady's pool gives it.
//
// Exit status: 0 when no finding fails, 1 when one does, 2 when the configuration is unusable.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool/doctor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// options are the command's flags.
type options struct {
	json     bool
	replicas int
	watch    time.Duration
	every    time.Duration
	timeout  time.Duration
}

// run is the command: it returns the exit status.
func run(ctx context.Context, args []string, env func(string) string, out, errOut io.Writer) int {
	var o options
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.BoolVar(&o.json, "json", false, "print JSON (one report; with -watch, then one event per line)")
	fs.IntVar(&o.replicas, "replicas", 1, "instances of the service, each with its own pool, sharing the database")
	fs.DurationVar(&o.watch, "watch", 0, "after the report, watch the path for this long (e.g. 60s)")
	fs.DurationVar(&o.every, "every", doctor.DefaultWatchEvery, "time between probes with -watch")
	fs.DurationVar(&o.timeout, "timeout", doctor.DefaultTimeout, "bound on the diagnosis")
	fs.Usage = func() {
		fmt.Fprintln(errOut, "usage: doctor [flags] [connection string]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	cfg, cleanup, err := readConfig(ctx, fs.Arg(0), env, errOut)
	if err != nil {
		fmt.Fprintln(errOut, "doctor:", err)
		return 2
	}
	defer cleanup()
	r, err := doctor.Diagnose(ctx, cfg, doctor.Options{Replicas: o.replicas, Timeout: o.timeout})
	if err != nil {
		fmt.Fprintln(errOut, "doctor:", err)
		return 2
	}
	if o.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		r.WriteText(out)
	}
	if o.watch > 0 {
		watch(ctx, cfg, o, out)
	}
	if r.Worst() == doctor.Fail {
		return 1
	}
	return 0
}

// startEmbedded starts a disposable PostgreSQL when env configures no database (nil config
// otherwise); embedded.go sets it (see the package documentation).
var startEmbedded func(ctx context.Context, env func(string) string, note io.Writer) (*config.Config, func(), error)

// readConfig parses the connection string, else starts the disposable database docapi uses when
// the environment configures none, else reads the environment; it returns a function that
// removes what it started.
func readConfig(ctx context.Context, dsn string, env func(string) string, note io.Writer) (*config.Config, func(), error) {
	if dsn != "" {
		cfg, err := config.Parse(dsn)
		return cfg, func() {}, err
	}
	if startEmbedded != nil {
		if cfg, cleanup, err := startEmbedded(ctx, env, note); cfg != nil || err != nil {
			return cfg, cleanup, err
		}
	}
	cfg, err := config.FromEnv()
	return cfg, func() {}, err
}

// watch runs doctor.Watch for o.watch, printing each event.
func watch(ctx context.Context, cfg *config.Config, o options, out io.Writer) {
	ctx, cancel := context.WithTimeout(ctx, o.watch)
	defer cancel()
	if !o.json {
		fmt.Fprintf(out, "watching for %s, a round every %s (Ctrl-C stops)\n", o.watch, o.every)
	}
	enc := json.NewEncoder(out)
	doctor.Watch(ctx, cfg, doctor.WatchOptions{Every: o.every}, func(e doctor.Event) {
		if o.json {
			enc.Encode(e)
			return
		}
		fmt.Fprintln(out, eventLine(e))
	})
}

// eventLine formats an event for people.
func eventLine(e doctor.Event) string {
	probe := e.Probe
	if e.Probe == doctor.ProbeIdle {
		probe += " " + e.Idle.Round(time.Second).String()
	}
	if e.Err == nil {
		return fmt.Sprintf("%s  %-10s ok    %s", e.At.Format("15:04:05"), probe, e.Took.Round(100*time.Microsecond))
	}
	var pe interface{ SQLState() string }
	state := ""
	if errors.As(e.Err, &pe) {
		state = " SQLSTATE " + pe.SQLState()
	}
	return fmt.Sprintf("%s  %-10s FAULT %s%s: %s", e.At.Format("15:04:05"), probe, e.Class, state, e.Error)
}
