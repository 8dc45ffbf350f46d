package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{}) }

// through starts a proxy in front of the server and connects through it.
func through(t *testing.T) (*faultproxy.Proxy, *pgx.Conn) {
	t.Helper()
	s := pgharness.Require(t, srv)
	p := faultproxy.Start(t, s.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgharness.WithAddr(s.DSN(), p.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return p, conn
}

func TestForwardsTLSSessions(t *testing.T) {
	t.Parallel()
	p, conn := through(t)
	var ssl bool
	if err := conn.QueryRow(context.Background(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("ssl=%v err=%v", ssl, err)
	}
	if p.Flows() != 1 {
		t.Fatalf("flows = %d, want 1", p.Flows())
	}
}

func TestResetAllAbortsConnections(t *testing.T) {
	t.Parallel()
	p, conn := through(t)
	if n := p.ResetAll(); n != 1 {
		t.Fatalf("reset %d flows, want 1", n)
	}
	_, err := conn.Exec(context.Background(), "SELECT 1")
	if err == nil {
		t.Fatal("query succeeded on a reset connection")
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Logf("error after reset (not ECONNRESET, still a failure): %v", err)
	}
}

func TestLatencyDelaysRoundTrips(t *testing.T) {
	t.Parallel()
	p, conn := through(t)
	p.SetLatency(50 * time.Millisecond)
	start := time.Now()
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// A lower bound only: a sleep can never make a round trip shorter.
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("round trip took %v, want at least 2 x 50ms", d)
	}
}

func TestBlackholeSwallowsIdleFlowsSilently(t *testing.T) {
	t.Parallel()
	p, conn := through(t)
	p.BlackholeIdle(200 * time.Millisecond)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a busy flow was swallowed: %v", err)
	}
	time.Sleep(400 * time.Millisecond) // let the flow go idle past the threshold
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := conn.Exec(short, "SELECT 1")
	if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Fatalf("want no answer (a timeout), got %v", err)
	}
}

func TestStallResponsesLetsRequestsThrough(t *testing.T) {
	t.Parallel()
	p, conn := through(t)
	ctx := context.Background()
	// The server receives and runs the statement; its answer is swallowed; a reset reports the
	// loss. Another session sees the row: the outcome was unknown to the client only.
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS stall_probe (id text)"); err != nil {
		t.Fatal(err)
	}
	p.StallResponses()
	go func() {
		time.Sleep(300 * time.Millisecond)
		p.ResetAll()
	}()
	if _, err := conn.Exec(ctx, "INSERT INTO stall_probe VALUES ($1)", pgx.QueryExecModeSimpleProtocol, t.Name()); err == nil {
		t.Fatal("the insert's answer arrived through a stalled proxy")
	}
	other, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	var n int
	if err := other.QueryRow(ctx, "SELECT count(*) FROM stall_probe WHERE id = $1", t.Name()).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows = %d (err %v), want 1: the server must have run the insert", n, err)
	}
}

func TestSetTargetMovesNewFlowsOnly(t *testing.T) {
	t.Parallel()
	// Two stand-in servers that each answer a connection with their name.
	serve := func(name string) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name))
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	a, b := serve("a"), serve("b")
	p := faultproxy.Start(t, a)
	read := func() string {
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, _ := io.ReadAll(c)
		return string(got)
	}
	if got := read(); got != "a" {
		t.Fatalf("before SetTarget: reached %q, want a", got)
	}
	p.SetTarget(b)
	if got := read(); got != "b" {
		t.Fatalf("after SetTarget: reached %q, want b", got)
	}
}
