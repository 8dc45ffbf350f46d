package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// sqlTracer records the SQL of every query pgx starts.
type sqlTracer struct {
	mu   sync.Mutex
	seen map[string]int
}

func (tr *sqlTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tr.mu.Lock()
	tr.seen[d.SQL]++
	tr.mu.Unlock()
	return ctx
}

func (tr *sqlTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (tr *sqlTracer) count(sql string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.seen[sql]
}

func TestUserTracerSeesEveryAttemptOfARetriedQuery(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	tr := &sqlTracer{seen: map[string]int{}}
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) { c.Size, c.Overflow = 1, 0 },
		pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = tr }))
	const q = "SELECT pg_sleep(0.5), 1"
	go func() {
		time.Sleep(200 * time.Millisecond)
		proxy.ResetAll() // the read is in flight: its connection is lost
	}()
	var n int
	if err := p.Idempotent().QueryRow(t.Context(), q).Scan(nil, &n); err != nil {
		t.Fatal(err)
	}
	if got := tr.count(q); got < 2 {
		t.Fatalf("tracer saw the query %d times, want the first attempt and its retry", got)
	}
}

func TestTypeRegisteredInAfterConnectWorksOnEveryConnection(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn := freshDB(t)
	admin := newPool(t, dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	if _, err := admin.Exec(t.Context(), `CREATE TYPE mood AS ENUM ('calm', 'cross')`); err != nil {
		t.Fatal(err)
	}
	registered := 0
	var mu sync.Mutex
	p := newPool(t, dsn, func(c *config.Config) { c.Size, c.Overflow = 2, 0 },
		pool.WithPgxConfig(func(pc *pgxpool.Config) {
			pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
				dt, err := c.LoadType(ctx, "mood")
				if err != nil {
					return err
				}
				c.TypeMap().RegisterType(dt)
				mu.Lock()
				registered++
				mu.Unlock()
				return nil
			}
		}))
	read := func() {
		t.Helper()
		var m string
		if err := p.Idempotent().QueryRow(t.Context(), "SELECT 'calm'::mood").Scan(&m); err != nil || m != "calm" {
			t.Fatalf("scan of a registered enum = %q, %v", m, err)
		}
	}
	read()
	if _, err := s.TerminateBackends(t.Context()); err != nil {
		t.Fatal(err)
	}
	read() // on a connection opened after the fault
	mu.Lock()
	defer mu.Unlock()
	if registered < 2 {
		t.Fatalf("AfterConnect ran %d times, want once per connection, the one opened after the kill included", registered)
	}
}

func TestRotatingPasswordFromBeforeConnectKeepsNewConnectionsWorking(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn := freshDB(t)
	admin := newPool(t, s.AdminDSN(), func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	role := fmt.Sprintf("rotating_%d", time.Now().UnixNano())
	if _, err := admin.Exec(t.Context(), fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'first-token'`, role)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	token := "first-token"
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Size, cfg.Overflow = 1, 0
	p, err := pool.New(t.Context(), cfg, pool.WithPgxConfig(func(pc *pgxpool.Config) {
		pc.ConnConfig.User = role
		pc.BeforeConnect = func(_ context.Context, cc *pgx.ConnConfig) error {
			mu.Lock()
			cc.Password = token
			mu.Unlock()
			return nil
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	whoami := func() string {
		t.Helper()
		var u string
		if err := p.Idempotent().QueryRow(t.Context(), "SELECT current_user").Scan(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := whoami(); u != role {
		t.Fatalf("connected as %q, want %q", u, role)
	}
	// The credential rotates: the server takes only the new one, and existing sessions die.
	if _, err := admin.Exec(t.Context(), fmt.Sprintf(`ALTER ROLE %s PASSWORD 'second-token'`, role)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	token = "second-token"
	mu.Unlock()
	if _, err := s.TerminateBackends(t.Context()); err != nil {
		t.Fatal(err)
	}
	if u := whoami(); u != role {
		t.Fatalf("after rotation connected as %q, want %q", u, role)
	}
}

func TestUserAfterConnectErrorFailsTheConnectionNotThePool(t *testing.T) {
	dsn := freshDB(t)
	refuse := errors.New("hook says no")
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LazyStart = true
	cfg.AcquireTimeout = 2 * time.Second
	p, err := pool.New(t.Context(), cfg, pool.WithPgxConfig(func(pc *pgxpool.Config) {
		pc.AfterConnect = func(context.Context, *pgx.Conn) error { return refuse }
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	err = p.Ping(t.Context())
	if !errors.Is(err, refuse) {
		t.Fatalf("Ping = %v, want the hook's error", err)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		t.Fatalf("unexpected server error %v", pe)
	}
}

func TestNewLogsTheRemovedChannelBinding(t *testing.T) {
	dsn := freshDB(t)
	var buf testhelp.SyncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg, err := config.Parse(dsn + "&channel_binding=require")
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(t.Context(), cfg, pool.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out := buf.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "channel_binding") {
		t.Fatalf("New did not log the removal of channel_binding; log:\n%s", out)
	}
	if strings.Contains(out, srv.Password()) {
		t.Fatal("the log shows the password")
	}
}
