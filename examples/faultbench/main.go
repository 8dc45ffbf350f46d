package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The first SIGINT/SIGTERM cancels the run, which then removes the container on its way
	// out; a second one removes it at once and exits.
	var srv atomic.Pointer[pgharness.Server]
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "faultbench: interrupted, cleaning up (again to force)")
		cancel()
		<-sig
		if s := srv.Load(); s != nil {
			s.Close()
		}
		os.Exit(130)
	}()

	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, srv.Store))
}

// options are the command-line flags.
type options struct {
	faults    []fault
	clients   []clientKind
	duration  time.Duration
	work      workload
	noResolve bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{work: workload{readers: 8, writers: 2, pause: 10 * time.Millisecond, timeout: 10 * time.Second}}
	fs := flag.NewFlagSet("faultbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	list := fs.String("faults", strings.Join(faultNames(), ","), "comma-separated faults to run, in order")
	clients := fs.String("clients", strings.Join(clientNames(), ","), "comma-separated clients to compare")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long the workload runs under each fault")
	fs.IntVar(&o.work.readers, "readers", o.work.readers, "reading goroutines per client (the horizon fault uses 4, and no writer)")
	fs.IntVar(&o.work.writers, "writers", o.work.writers, "writing goroutines per client")
	fs.DurationVar(&o.work.pause, "pause", o.work.pause, "pause after each request of a worker (the idle and horizon faults use 3s)")
	fs.DurationVar(&o.work.timeout, "timeout", o.work.timeout, "deadline of each request")
	resolve := fs.Bool("commit-resolution", true, "pgsteady resolves lost COMMITs (false: pool.WithoutCommitResolution)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.noResolve = !*resolve
	switch {
	case o.duration <= 0:
		return o, fmt.Errorf("-duration must be > 0, got %v", o.duration)
	case o.work.readers < 1:
		return o, fmt.Errorf("-readers must be >= 1, got %d", o.work.readers)
	case o.work.writers < 0:
		return o, fmt.Errorf("-writers must be >= 0, got %d", o.work.writers)
	case o.work.pause < 0:
		return o, fmt.Errorf("-pause must be >= 0, got %v", o.work.pause)
	case o.work.timeout <= 0:
		return o, fmt.Errorf("-timeout must be > 0, got %v", o.work.timeout)
	}
	for _, name := range strings.Split(*list, ",") {
		f, ok := faultByName(strings.TrimSpace(name))
		if !ok {
			return o, fmt.Errorf("-faults: unknown fault %q (known: %s)", name, strings.Join(faultNames(), ", "))
		}
		o.faults = append(o.faults, f)
	}
	for _, name := range strings.Split(*clients, ",") {
		k, ok := clientByName(strings.TrimSpace(name))
		if !ok {
			return o, fmt.Errorf("-clients: unknown client %q (known: %s)", name, strings.Join(clientNames(), ", "))
		}
		o.clients = append(o.clients, k)
	}
	return o, nil
}

// run runs the benchmark and returns the exit status (see the package documentation).
// started is told the server as soon as it runs, so that a second signal can remove it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started func(*pgharness.Server)) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "faultbench:", err)
		}
		return 2
	}
	begin := time.Now()
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "faultbench: [%5.1fs] %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, a...))
	}

	progress("starting PostgreSQL and PgBouncer in Docker")
	srv, err := pgharness.Start(ctx, pgharness.Options{PgBouncer: true})
	if err != nil {
		fmt.Fprintln(stderr, "faultbench:", err)
		return 2
	}
	started(srv)
	defer func() {
		if err := srv.Close(); err != nil {
			fmt.Fprintln(stderr, "faultbench: removing the container:", err)
		}
	}()
	version, err := serverVersion(ctx, srv)
	if err != nil {
		fmt.Fprintln(stderr, "faultbench:", err)
		return 2
	}

	b := &bench{srv: srv, clients: o.clients, duration: o.duration, work: o.work, noResolve: o.noResolve, progress: progress}
	var results []result
	var replicaResults []replicaResult
	for _, f := range o.faults {
		progress("fault %q: %s", f.name, f.title)
		if f.replica != nil {
			rs, err := b.runReplicaFault(ctx, f)
			if err != nil {
				fmt.Fprintf(stderr, "faultbench: fault %q: %v\n", f.name, err)
				return 2
			}
			replicaResults = append(replicaResults, rs...)
			continue
		}
		rs, err := b.runFault(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stderr, "faultbench: interrupted")
			} else {
				fmt.Fprintf(stderr, "faultbench: fault %q: %v\n", f.name, err)
			}
			return 2
		}
		results = append(results, rs...)
	}
	elapsed := time.Since(begin)
	progress("done")

	writeReport(stdout, reportHeader{
		CPUs:     runtime.NumCPU(),
		Postgres: version,
		Versions: versions(),
		Duration: o.duration,
		Work:     o.work,
		Elapsed:  elapsed,
		Resolve:  !o.noResolve,
	}, results)
	renderReplicas(stdout, replicaResults)
	if failures := append(missedBar(results), replicaMissedBar(replicaResults)...); len(failures) > 0 {
		fmt.Fprintln(stderr, "faultbench: pgsteady missed its bar:")
		for _, f := range failures {
			fmt.Fprintln(stderr, "  -", f)
		}
		return 1
	}
	return 0
}

// versions names the Go toolchain and the pgx module the program was built with.
func versions() string {
	s := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/jackc/pgx/v5" {
				s += ", pgx " + d.Version
			}
		}
	}
	return s
}

// serverVersion asks PostgreSQL for its version, for the report.
func serverVersion(ctx context.Context, srv *pgharness.Server) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var v string
	err = conn.QueryRow(ctx, "SHOW server_version").Scan(&v)
	// "15.14 (Debian 15.14-0+deb12u1)" -> "15.14"
	v, _, _ = strings.Cut(v, " ")
	return v, err
}
