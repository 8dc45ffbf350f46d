package pgharness_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{PgBouncer: true}) }

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func usesTLS(t *testing.T, conn *pgx.Conn) bool {
	t.Helper()
	var ssl bool
	err := conn.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
	if err != nil {
		t.Fatalf("pg_stat_ssl: %v", err)
	}
	return ssl
}

func TestConnectsOverTLS(t *testing.T) {
	s := pgharness.Require(t, srv)
	for name, dsn := range map[string]string{"require": s.DSN(), "verify-full": s.VerifyFullDSN()} {
		t.Run(name, func(t *testing.T) {
			if !usesTLS(t, connect(t, dsn)) {
				t.Fatal("session is not encrypted")
			}
		})
	}
}

func TestRefusesPlaintextAndWrongPassword(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	for name, dsn := range map[string]string{
		"plaintext":      s.DSN() + "&sslmode=disable",
		"wrong password": "postgres://app:wrong@" + s.Addr() + "/pgsteady?sslmode=require",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, dsn)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28000" && pgErr.Code != "28P01" {
				t.Fatalf("want an authentication error, got %v", err)
			}
		})
	}
}

func TestBouncerIsInTransactionMode(t *testing.T) {
	s := pgharness.Require(t, srv)
	conn := connect(t, s.BouncerDSN())
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// Two sessions through the pooler; a named prepared statement made on one server connection
	// is unknown on the other: the hard case the pooler-safe query mode exists for.
	var pid1, pid2 int
	other := connect(t, s.BouncerDSN())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	if err := other.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid1 == pid2 {
		t.Fatalf("a transaction's server connection (pid %d) was shared with another client", pid1)
	}
}

func TestNewDatabaseIsIsolated(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	conn := connect(t, dsn)
	if _, err := conn.Exec(context.Background(), "CREATE TABLE mine (id int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	err = connect(t, s.DSN()).QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'mine'").Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("table visible in the shared database: n=%d err=%v", n, err)
	}
}

// Fault helpers: each test proves the fault really happens.

func TestTerminateBackendsKillsOpenSessions(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	conn := connect(t, s.DSN())
	n, err := s.TerminateBackends(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 {
		t.Fatalf("terminated %d backends, want at least 1", n)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a terminated session still answered")
	}
	if !usesTLS(t, connect(t, s.DSN())) {
		t.Fatal("new session not encrypted")
	}
}

func TestRestartKeepsThePortAndStaysDown(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	conn := connect(t, s.DSN())
	addr := s.Addr()

	if err := s.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := pgx.Connect(short, s.DSN())
	cancel()
	if err == nil {
		t.Fatal("connected while the server was down")
	}
	if err := s.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a session from before the restart still answered")
	}

	if err := s.Restart(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("address changed from %s to %s", addr, s.Addr())
	}
	if !usesTLS(t, connect(t, s.DSN())) {
		t.Fatal("new session not encrypted")
	}
}

func TestIdleSessionTimeoutClosesIdleSessions(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	if err := s.SetIdleSessionTimeout(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.SetIdleSessionTimeout(ctx, 0) })
	conn := connect(t, s.DSN())
	// Wait (not a timing assertion) until the server has closed the idle session.
	deadline := time.Now().Add(30 * time.Second)
	for !conn.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != "57P05" {
				t.Fatalf("want idle_session_timeout (57P05), got %v", err)
			}
			return
		}
	}
	t.Fatal("the idle session was never closed")
}

func TestPauseHangsTheServer(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	conn := connect(t, s.DSN())
	if err := s.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	paused := true
	t.Cleanup(func() {
		if paused {
			s.Unpause(ctx)
		}
	})
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err := conn.Exec(short, "SELECT 1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Fatalf("want a timeout from a paused server, got %v", err)
	}
	if err := s.Unpause(ctx); err != nil {
		t.Fatal(err)
	}
	paused = false
	if _, err := connect(t, s.DSN()).Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after unpause: %v", err)
	}
}
