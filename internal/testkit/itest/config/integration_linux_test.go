package config_test

import (
	"context"
	"crypto/tls"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// TestIntegrationPooledConnectionHasKeepalive checks, on a real pooled TLS connection, that
// pgx dialled through PgxPoolConfig's DialFunc: the socket carries the keepalive settings.
func TestIntegrationPooledConnectionHasKeepalive(t *testing.T) {
	s := pgharness.Require(t, srv)
	testhelp.ClearEnv(t)
	c, err := config.Parse(s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	c.KeepAlive = 23 * time.Second
	pool := newPool(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	nc := conn.Conn().PgConn().Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		t.Fatalf("connection is %T, want TCP under TLS", nc)
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var idle int
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		idle, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	}); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if idle != 23 {
		t.Fatalf("TCP_KEEPIDLE = %d, want 23", idle)
	}
}
