// Command docapi is the seed's document API, in Go, on pgsteady: it stores scanned identity
// documents (driving licences "permis", national identity cards "cin", vehicle registration
// cards "gris") behind token authentication, in PostgreSQL, through a [pool.Cluster].
//
// Run it with no configuration to get a disposable PostgreSQL and a demo user whose password is
// printed. The database runs in Docker when an engine answers, else as a throwaway cluster of
// the PostgreSQL server binaries on this machine (initdb and postgres, on $PATH or where
// Debian, Homebrew or Postgres.app put them); either way with TLS, on 127.0.0.1, and removed on
// exit, Ctrl-C included (that is embedded.go, which imports this repository's test harness: a
// copy of docapi outside the repository deletes it and sets DATABASE_URL):
//
//	go -C examples run ./docapi
//
// or point it at a database, with DATABASE_URL or the seed's DB_USER, DB_PASSWORD, DB_HOST,
// DB_PORT, DB_NAME and DB_SSLMODE (see [config.FromEnv]), and, optionally, read replicas with
// DATABASE_REPLICA_URLS, their connection URLs separated by commas (lists, gets and images then
// read from a replica that has replayed every earlier write, else from the primary; see
// [pool.Cluster]):
//
//	DATABASE_URL='postgres://app:secret@db.example.com/docs' \
//	DOCAPI_USER_EMAIL=agent@example.com DOCAPI_USER_PASSWORD='a long secret' \
//	go -C examples run ./docapi
//
// Other variables: PORT (default 8080), HOST (default 127.0.0.1), DOCAPI_LOG_LEVEL (debug,
// info, warn or error; default info; info logs one line per request), DOCAPI_USER_ADMIN=true
// (the configured user reads every user's documents; others read only their own),
// DOCAPI_TRUSTED_PROXIES (addresses or CIDR prefixes of proxies whose X-Forwarded-For names the
// client, for login throttling and connection limits), DOCAPI_MAX_CONNS (default 1024) and
// DOCAPI_MAX_CONNS_PER_ADDR (default 64; trusted proxies count only in the total),
// DOCAPI_USER_QUOTA_MB (MiB of images one user may store; default 100, 0: no limit),
// DOCAPI_PRINT_ADMIN_DSN=1 (embedded database only: print
// the superuser's DSN, for loadgen -chaos), DOCAPI_OPS_ADDR (host:port: serve /metrics and
// /debug/pool there, without a token, and not on the API; unset, they answer admins only). The
// schema is created or migrated at start.
//
// Routes (JSON; errors are {"error": "..."}):
//
//	POST /auth/login                 {"email","password"} -> {"token", ...}; 429 when throttled
//	POST /auth/logout                revokes the token it is sent with
//	GET  /{kind}/all?limit=&after=   newest first; after= is the next_after of the last page
//	GET  /{kind}/{id}                one document
//	GET  /{kind}/{id}/image          its image
//	POST /{kind}/process             multipart upload: "image" plus the card's fields
//	GET  /healthz, /readyz           liveness, readiness (the database, within the retry budget)
//	GET  /metrics                    Prometheus metrics (admins, or on DOCAPI_OPS_ADDR)
//	GET  /debug/pool                 each member's role, lag, reads and pool statistics
//	                                 (admins, or on DOCAPI_OPS_ADDR)
//
// where {kind} is permis, cin or gris. A user reads only the documents they uploaded (another
// user's id answers 404), an admin every document. All but login and health need
// "Authorization: Bearer <token>". SIGINT or SIGTERM drains requests, then closes the pool.
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

const (
	defaultPort     = "8080"
	defaultHost     = "127.0.0.1"
	shutdownTimeout = 15 * time.Second
	demoEmail       = "demo@example.com"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "docapi:", err)
		os.Exit(1)
	}
}

// run starts docapi and serves until ctx is done, then shuts down gracefully. env reads
// PORT, HOST and the DOCAPI_* variables, and decides whether a database is configured; the
// database settings themselves are read from the process environment by [config.FromEnv].
// Messages for the user go to stdout, logs to stderr.
func run(ctx context.Context, env func(string) string, stdout io.Writer) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(env("DOCAPI_LOG_LEVEL"))}))

	cfg, embedded, err := databaseConfig(ctx, env, stdout)
	if err != nil {
		return err
	}
	if embedded != nil {
		defer func() {
			embedded.Close()
			fmt.Fprintln(stdout, "docapi: embedded database removed")
		}()
	}
	for _, w := range cfg.Warnings {
		logger.Warn("docapi: config: " + w)
	}

	tel, err := newTelemetry()
	if err != nil {
		return err
	}
	defer tel.close()
	replicas, err := replicaConfigs(env("DATABASE_REPLICA_URLS"))
	if err != nil {
		return err
	}
	c, err := pool.NewCluster(ctx, cfg, replicas, pool.WithMemberOptions(
		pool.WithLogger(logger), traceRequests(), pool.WithObserver(tel.observer), pool.WithObserver(requestObserver{})))
	if err != nil {
		return err
	}
	defer c.Close()
	p := c.Primary()
	if err := tel.register(p); err != nil {
		return err
	}
	if err := migrate(ctx, p, logger); err != nil {
		return err
	}
	if err := setupUser(ctx, newStore(c, logger), env, embedded != nil, stdout); err != nil {
		return err
	}

	proxies, err := parseTrustedProxies(env("DOCAPI_TRUSTED_PROXIES"))
	if err != nil {
		return err
	}
	limits, err := parseConnLimits(env)
	if err != nil {
		return err
	}
	quota, err := parseUploadQuota(env)
	if err != nil {
		return err
	}
	port := cmp.Or(env("PORT"), defaultPort)
	ln, err := net.Listen("tcp", net.JoinHostPort(cmp.Or(env("HOST"), defaultHost), port))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "docapi: listening on http://%s\n", ln.Addr())

	opts := []serverOption{withTrustedProxies(proxies), withTelemetry(tel), withUploadQuota(quota)}
	opsAddr := env("DOCAPI_OPS_ADDR")
	if opsAddr != "" {
		opts = append(opts, withOpsApart())
	}
	api := newServer(c, logger, opts...)
	guard := newConnGuard(ln, limits, proxies, logger)
	srv := newHTTPServer(api, guard, logger)
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(guard) }()
	if opsAddr != "" {
		oln, err := net.Listen("tcp", opsAddr)
		if err != nil {
			srv.Close()
			return fmt.Errorf("DOCAPI_OPS_ADDR: %w", err)
		}
		fmt.Fprintf(stdout, "docapi: /metrics and /debug/pool on http://%s\n", oln.Addr())
		og := newConnGuard(oln, connLimits{total: 64, perAddr: 64}, nil, logger)
		ops := newHTTPServer(api.opsHandler(), og, logger)
		go func() { serveErr <- ops.Serve(og) }()
		defer ops.Close()
	}
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}

	fmt.Fprintln(stdout, "docapi: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-serveErr // http.ErrServerClosed
	return nil
}

// embeddedDB is the disposable database embedded.go starts.
type embeddedDB interface {
	DSN() string
	Close() error
}

// startEmbedded starts a disposable PostgreSQL when env configures no database, and returns nil
// when it does. embedded.go sets it; it imports this repository's test harness, so a copy of
// docapi outside the repository deletes that file and reads DATABASE_URL or DB_* alone.
var startEmbedded func(ctx context.Context, env func(string) string, stdout io.Writer) (embeddedDB, error)

// databaseConfig reads the database settings, or, when none is configured, starts a disposable
// PostgreSQL (returned, for the caller to close).
func databaseConfig(ctx context.Context, env func(string) string, stdout io.Writer) (*config.Config, embeddedDB, error) {
	if startEmbedded != nil {
		db, err := startEmbedded(ctx, env, stdout)
		if err != nil {
			return nil, nil, err
		}
		if db != nil {
			cfg, err := config.Parse(db.DSN())
			if err != nil {
				db.Close()
				return nil, nil, err
			}
			return cfg, db, nil
		}
	}
	cfg, err := config.FromEnv()
	return cfg, nil, err
}

// setupUser creates or updates the user DOCAPI_USER_EMAIL with DOCAPI_USER_PASSWORD. On the
// embedded database without them it creates a demo user and prints its password.
func setupUser(ctx context.Context, st *store, env func(string) string, embedded bool, stdout io.Writer) error {
	email, password := env("DOCAPI_USER_EMAIL"), env("DOCAPI_USER_PASSWORD")
	switch {
	case email != "" && password != "":
		admin, err := parseAdmin(env("DOCAPI_USER_ADMIN"))
		if err != nil {
			return err
		}
		return ensureUser(ctx, st, email, password, admin)
	case email != "" || password != "":
		return errors.New("set both DOCAPI_USER_EMAIL and DOCAPI_USER_PASSWORD, or neither")
	case !embedded:
		return nil
	}
	b := make([]byte, 12)
	rand.Read(b)
	password = base64.RawURLEncoding.EncodeToString(b)
	if err := ensureUser(ctx, st, demoEmail, password, false); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "docapi: demo user %s, password %s\n", demoEmail, password)
	return nil
}

// replicaConfigs parses DATABASE_REPLICA_URLS: connection URLs separated by commas, one a
// replica ("" gives none). An error names the replica by its place, never its password.
func replicaConfigs(list string) ([]*config.Config, error) {
	var out []*config.Config
	for i, u := range strings.Split(list, ",") {
		if u = strings.TrimSpace(u); u == "" {
			if strings.TrimSpace(list) != "" {
				return nil, fmt.Errorf("DATABASE_REPLICA_URLS: replica %d is empty", i+1)
			}
			continue
		}
		cfg, err := config.Parse(u)
		if err != nil {
			return nil, fmt.Errorf("DATABASE_REPLICA_URLS: replica %d: %w", i+1, err)
		}
		out = append(out, cfg)
	}
	return out, nil
}

// redact masks the password of a URL connection string.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if l.UnmarshalText([]byte(strings.ToUpper(s))) != nil {
		return slog.LevelInfo
	}
	return l
}
