package pgharness

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/pgsteady/pgsteady/config"
)

// Database is a disposable PostgreSQL for the examples and tests: a Docker container
// ([*Server], from [Start]) or a throwaway cluster run from the server binaries on this machine
// ([*Cluster], from [StartLocal]). Both are set up alike: TLS with a certificate made for the
// run, SCRAM passwords, hostssl only, 127.0.0.1 only, the superuser postgres, and the app user
// owning database "pgsteady".
type Database interface {
	// DSN connects the app user to database "pgsteady" with sslmode=require.
	DSN() string
	// AdminDSN connects the superuser to database "postgres" with sslmode=require (what
	// loadgen -chaos takes).
	AdminDSN() string
	// CAFile is the path of the PEM file of the CA that signed the server's certificate.
	CAFile() string
	// NewDatabase creates an empty database owned by the app user and returns a DSN for it.
	NewDatabase(ctx context.Context) (string, error)
	// TerminateBackends kills every client backend (FATAL 57P01) and says how many.
	TerminateBackends(ctx context.Context) (int, error)
	// StopServer shuts the server down (fast shutdown) until StartServer.
	StopServer(ctx context.Context) error
	// StartServer starts it again on the same port and waits until it accepts connections.
	StartServer(ctx context.Context) error
	// Restart is StopServer, a pause of down, then StartServer.
	Restart(ctx context.Context, down time.Duration) error
	// SetIdleSessionTimeout sets the server-wide idle_session_timeout (0 turns it off).
	SetIdleSessionTimeout(ctx context.Context, d time.Duration) error
	// String says what the database is and where it runs, for the user.
	String() string
	// Close removes the database, its processes and its files. It is idempotent.
	Close() error
}

var (
	_ Database = (*Server)(nil)
	_ Database = (*Cluster)(nil)
)

// String says what the server is: "PostgreSQL in Docker, container 0123456789ab".
func (s *Server) String() string {
	id := s.ctr.GetContainerID()
	return "PostgreSQL in Docker, container " + id[:min(12, len(id))]
}

// NoDatabaseError is returned by [StartEmbedded] when neither a Docker engine nor PostgreSQL
// server binaries on this machine gave a database. Its message names the ways out.
type NoDatabaseError struct {
	Docker error // why Docker could not be used
	Local  error // why the local binaries could not be used; wraps [ErrNoLocalPostgres] when there are none
}

// Error says what failed and the three ways out: start Docker, install PostgreSQL, or set
// DATABASE_URL.
func (e *NoDatabaseError) Error() string {
	return fmt.Sprintf("no disposable PostgreSQL could be started (Docker: %s; local PostgreSQL: %s): "+
		"start Docker, or install PostgreSQL (apt-get install postgresql, dnf install postgresql-server, brew install postgresql), "+
		"or set DATABASE_URL to a database of yours",
		summary(e.Docker), summary(e.Local))
}

// Unwrap returns both causes, for [errors.Is] and [errors.As].
func (e *NoDatabaseError) Unwrap() []error { return []error{e.Docker, e.Local} }

// StartEmbedded starts a disposable database for an example, trying in order:
//
//   - a Docker engine, through [Start] (when $DOCKER_HOST is set, that engine alone: a
//     DOCKER_HOST that does not answer means no Docker, whatever other socket exists);
//   - the PostgreSQL server binaries on this machine, through [StartLocal].
//
// note, if not nil, is told in one line when Docker fails and the local binaries are tried.
// When both fail the error is a [*NoDatabaseError]; when ctx ends it is ctx's error. Whatever
// was started is removed on failure; on success the caller must call Close.
func StartEmbedded(ctx context.Context, note func(string)) (Database, error) {
	if note == nil {
		note = func(string) {}
	}
	dockerErr := dockerHostAnswers(ctx)
	if dockerErr == nil {
		s, err := Start(ctx, Options{})
		if err == nil {
			return s, nil
		}
		dockerErr = err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	note("Docker: " + summary(dockerErr) + "; trying the PostgreSQL server binaries on this machine")
	c, err := StartLocal(ctx)
	if err == nil {
		return c, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	return nil, &NoDatabaseError{Docker: dockerErr, Local: err}
}

// dockerHostAnswers pings the engine $DOCKER_HOST names, if set. (testcontainers-go would fall
// back to the default socket when DOCKER_HOST does not answer; a user who set DOCKER_HOST meant
// that engine.)
func dockerHostAnswers(ctx context.Context) error {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		return nil
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return fmt.Errorf("DOCKER_HOST=%s: %w", host, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("no engine answers at DOCKER_HOST=%s", host)
	}
	return nil
}

// summary is the first line of err's message, without the package prefix.
func summary(err error) string {
	if err == nil {
		return "ok"
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	return strings.TrimPrefix(first, "pgharness: ")
}

// Disposable is how the example command named cmd (quickstart, doctor) starts when no database
// is configured. The function it returns starts, unless env configures a database
// ([DatabaseConfigured]), an embedded database ([StartEmbedded]), telling the user on out, and
// returns a config that reaches it and a function that removes it. With a database configured
// it returns a nil config.
func Disposable(cmd string) func(ctx context.Context, env func(string) string, out io.Writer) (*config.Config, func(), error) {
	return func(ctx context.Context, env func(string) string, out io.Writer) (*config.Config, func(), error) {
		if DatabaseConfigured(env) {
			return nil, nil, nil
		}
		say := func(note string) { fmt.Fprintf(out, "%s: %s\n", cmd, note) }
		say("no DATABASE_URL or DB_HOST: starting a disposable PostgreSQL (removed on exit)")
		db, err := StartEmbedded(ctx, say)
		if err != nil {
			return nil, nil, fmt.Errorf("embedded database: %w", err)
		}
		say("embedded database: " + db.String())
		cfg, err := config.Parse(db.DSN())
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return cfg, func() { db.Close() }, nil
	}
}

// DatabaseConfigured reports whether env (os.Getenv, or a test's stand-in) configures a
// database: DATABASE_URL, one of the DB_* variables config.FromEnv reads, PGHOST or PGSERVICE.
// The examples start an embedded database only when it is false.
func DatabaseConfigured(env func(string) string) bool {
	for _, k := range []string{"DATABASE_URL", "DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME", "DB_PORT", "DB_SSLMODE", "PGHOST", "PGSERVICE"} {
		if env(k) != "" {
			return true
		}
	}
	return false
}
