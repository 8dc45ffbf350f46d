package retry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/retry"
)

func TestIntegrationPgBouncerAnswers(t *testing.T) {
	pgharness.Require(t, srv) // an integration test: not under -short
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s, err := pgharness.Start(ctx, pgharness.Options{PgBouncer: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	ccfg, err := pgx.ParseConfig(pgharness.WithDatabase(pgharness.WithAddr(s.AdminDSN(), s.BouncerAddr()), "pgbouncer"))
	if err != nil {
		t.Fatal(err)
	}
	ccfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol // the console knows no other
	console, err := pgx.ConnectConfig(ctx, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close(context.Background())
	set := func(setting string) {
		t.Helper()
		if _, err := console.Exec(ctx, "SET "+setting); err != nil {
			t.Fatalf("SET %s: %v", setting, err)
		}
	}
	connect := func() (*pgx.Conn, error) {
		cfg, err := pgx.ParseConfig(s.BouncerDSN())
		if err != nil {
			t.Fatal(err)
		}
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		return pgx.ConnectConfig(ctx, cfg)
	}
	mustConnect := func() *pgx.Conn {
		t.Helper()
		c, err := connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	check := func(err error, want retry.Class, message string) {
		t.Helper()
		wantClass(t, err, want)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, message) {
			t.Errorf("want PgBouncer's %q, got %v", message, err)
		}
	}

	t.Run("query_wait_timeout: the query was never forwarded", func(t *testing.T) {
		set("default_pool_size = 1")
		set("query_wait_timeout = 1")
		defer set("query_wait_timeout = 120")
		defer set("default_pool_size = 40")
		holder := mustConnect()
		tx, err := holder.Begin(ctx) // holds the only server connection
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		_, err = mustConnect().Exec(ctx, "SELECT 1")
		check(err, retry.NotSent, "query_wait_timeout")
	})

	t.Run("client_idle_timeout: the idle client was dropped", func(t *testing.T) {
		set("client_idle_timeout = 1")
		defer set("client_idle_timeout = 0")
		idle := mustConnect()
		time.Sleep(2500 * time.Millisecond)
		_, err := idle.Exec(ctx, "SELECT 1")
		check(err, retry.NotSent, "client_idle_timeout")
	})

	t.Run("max_client_conn: refused at login", func(t *testing.T) {
		set("max_client_conn = 1") // the console's own connection uses it
		defer set("max_client_conn = 1000")
		c, err := connect()
		if err == nil {
			c.Close(ctx)
			t.Fatal("connected")
		}
		check(err, retry.NotSent, "no more connections allowed")
	})

	t.Run("server conn crashed: the query may have run", func(t *testing.T) {
		c := mustConnect()
		done := make(chan error, 1)
		go func() {
			_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
			done <- err
		}()
		admin, err := pgx.Connect(ctx, s.AdminDSN())
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		for pid == 0 {
			err := admin.QueryRow(ctx, "SELECT coalesce(max(pid), 0) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'").Scan(&pid)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// SIGKILL, not pg_terminate_backend: the server connection dies without a word, and
		// PgBouncer tells its client. (The crash ends the admin session too.)
		_, err = admin.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN EXECUTE format('COPY (SELECT 1) TO PROGRAM %%L', 'kill -9 %d'); END $$`, pid))
		t.Logf("kill -9 %d: %v", pid, err)
		admin.Close(context.Background())
		check(<-done, retry.ConnLost, "server conn crashed?")
	})
}
