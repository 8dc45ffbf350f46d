package faultproxy_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/netdial"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"golang.org/x/sys/unix"
)

// Keepalive settings for the tests: an idle dead flow is found within about
// idle + interval*count = 1 + 1*3 = 4 s.
var fastKeepAlive = net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 3}

// holeTarget starts a plain proxy in front of the server, so that each test has a port of its
// own to black-hole.
func holeTarget(t *testing.T) (port int, p *faultproxy.Proxy) {
	t.Helper()
	s := pgharness.Require(t, srv)
	p = faultproxy.Start(t, s.Addr())
	_, portText, _ := net.SplitHostPort(p.Addr())
	port, _ = strconv.Atoi(portText)
	return port, p
}

// dial connects to addr through d.
func dial(t *testing.T, addr string, d *netdial.Dialer) *pgx.Conn {
	t.Helper()
	conn, _ := dialTCP(t, addr, d)
	return conn
}

// dialTCP is dial that also returns the connection's TCP socket.
func dialTCP(t *testing.T, addr string, d *netdial.Dialer) (*pgx.Conn, *net.TCPConn) {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgharness.WithAddr(srv.DSN(), addr))
	if err != nil {
		t.Fatal(err)
	}
	var tcp *net.TCPConn
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			tcp = tc
		}
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, tcp
}

// waitAcked waits until everything sent on c has been acknowledged (TCP_INFO's unacked count is
// 0), so that a hole made next catches no request segment in flight, nor a delayed ACK.
func waitAcked(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info *unix.TCPInfo
		var gerr error
		if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		if info.Unacked == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d segments still unacknowledged after 30 s", info.Unacked)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// exec runs sql on conn bounded by d and reports the error and how long it took.
func exec(conn *pgx.Conn, sql string, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(ctx, sql)
	return time.Since(start), err
}

// endedByKernel reports whether err is the kernel giving up on the flow: ETIMEDOUT, which pgx
// passes on from the socket, or (under TLS, when the socket error was consumed by an earlier
// read) the end of the stream that follows it.
func endedByKernel(err error) bool {
	return errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, io.ErrUnexpectedEOF)
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err)
}

func TestBlackHoleDropAllStallsOpenFlowsAndNewConnects(t *testing.T) {
	t.Parallel()
	port, p := holeTarget(t)
	conn := dial(t, p.Addr(), &netdial.Dialer{DisableKeepAlive: true})
	h := faultproxy.BlackHole(t, port, faultproxy.DropAll)

	if _, err := exec(conn, "SELECT 1", 2*time.Second); !isTimeout(err) {
		t.Fatalf("a statement on an open flow: %v, want a timeout (no reset, no refusal)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := pgx.Connect(ctx, pgharness.WithAddr(srv.DSN(), p.Addr()))
	cancel()
	if !isTimeout(err) {
		t.Fatalf("a new connect: %v, want a timeout", err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := exec(dial(t, p.Addr(), &netdial.Dialer{}), "SELECT 1", 10*time.Second); err != nil {
		t.Fatalf("after Close: %v", err)
	}
}

func TestBlackHoleDropExistingLetsNewConnectionsThrough(t *testing.T) {
	t.Parallel()
	port, p := holeTarget(t)
	old := dial(t, p.Addr(), &netdial.Dialer{DisableKeepAlive: true})
	faultproxy.BlackHole(t, port, faultproxy.DropExisting)

	if _, err := exec(dial(t, p.Addr(), &netdial.Dialer{}), "SELECT 1", 10*time.Second); err != nil {
		t.Fatalf("a new connection: %v", err)
	}
	if _, err := exec(old, "SELECT 1", 2*time.Second); !isTimeout(err) {
		t.Fatalf("the flow open before the hole: %v, want a timeout", err)
	}
}

// TestKeepAliveFindsAnIdleFlowInABlackHole: a connection waiting for the server with nothing of
// its own in flight (here: waiting for a notification) is found dead by keepalive alone, within
// about idle + interval*count; without keepalive it waits for as long as the caller lets it.
func TestKeepAliveFindsAnIdleFlowInABlackHole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		dialer   netdial.Dialer
		bound    time.Duration // the caller's deadline
		wantDead bool          // found dead by the kernel (ETIMEDOUT) rather than by the deadline
	}{
		{"keepalive 1s+1s*3", netdial.Dialer{KeepAlive: fastKeepAlive}, time.Minute, true},
		{"no keepalive", netdial.Dialer{DisableKeepAlive: true}, 8 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port, p := holeTarget(t)
			conn, tcp := dialTCP(t, p.Addr(), &tt.dialer)
			waitAcked(t, tcp) // idle: nothing of the client's in flight
			faultproxy.BlackHole(t, port, faultproxy.DropAll)
			ctx, cancel := context.WithTimeout(context.Background(), tt.bound)
			defer cancel()
			start := time.Now()
			_, err := conn.WaitForNotification(ctx)
			took := time.Since(start)
			t.Logf("idle flow in a black hole: ended after %v with %v", took.Round(10*time.Millisecond), err)
			if tt.wantDead {
				if !errors.Is(err, syscall.ETIMEDOUT) || ctx.Err() != nil {
					t.Fatalf("want the kernel to time the flow out (ETIMEDOUT) before the %v deadline, got %v", tt.bound, err)
				}
			} else if !isTimeout(err) || ctx.Err() == nil {
				t.Fatalf("want the wait to last until the caller's deadline, got %v", err)
			}
		})
	}
}

// TestUserTimeoutEndsAStatementStalledInABlackHole: a statement in flight when the path dies
// ends with ETIMEDOUT without a caller deadline once the socket has TCP_USER_TIMEOUT, whether
// the request or the reply is lost. Keepalive alone finds a lost reply (nothing of the client's
// is unacknowledged) but not a lost request: Linux sends no keepalive probe while data is
// unacknowledged and retransmits for about 15 minutes.
func TestUserTimeoutEndsAStatementStalledInABlackHole(t *testing.T) {
	t.Parallel()
	withUserTimeout := netdial.Dialer{KeepAlive: fastKeepAlive, UserTimeout: 2 * time.Second}
	keepAliveOnly := netdial.Dialer{KeepAlive: fastKeepAlive}
	tests := []struct {
		name     string
		dialer   netdial.Dialer
		lost     string // "request": the hole opens before the statement is sent; "reply": while it runs
		bound    time.Duration
		wantDead bool
	}{
		{"request lost, user timeout 2s", withUserTimeout, "request", time.Minute, true},
		{"request lost, keepalive only", keepAliveOnly, "request", 10 * time.Second, false},
		{"reply lost, user timeout 2s", withUserTimeout, "reply", time.Minute, true},
		{"reply lost, keepalive only", keepAliveOnly, "reply", time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port, p := holeTarget(t)
			conn, tcp := dialTCP(t, p.Addr(), &tt.dialer)
			pid := conn.PgConn().PID()
			ctx, cancel := context.WithTimeout(context.Background(), tt.bound)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			if tt.lost == "request" {
				faultproxy.BlackHole(t, port, faultproxy.DropAll)
				start = time.Now()
				go func() { _, err := conn.Exec(ctx, "SELECT 1"); done <- err }()
			} else {
				go func() { _, err := conn.Exec(ctx, "SELECT pg_sleep(3)"); done <- err }()
				waitActive(t, pid)
				waitAcked(t, tcp) // the request arrived; only the reply can be lost
				faultproxy.BlackHole(t, port, faultproxy.DropAll)
				start = time.Now()
			}
			err := <-done
			took := time.Since(start)
			t.Logf("statement with its %s lost: ended after %v with %v", tt.lost, took.Round(10*time.Millisecond), err)
			if tt.wantDead {
				if !endedByKernel(err) || ctx.Err() != nil {
					t.Fatalf("want the kernel to end the statement (ETIMEDOUT) before the %v deadline, got %v", tt.bound, err)
				}
			} else if !isTimeout(err) || ctx.Err() == nil {
				t.Fatalf("want the statement to hang until the caller's deadline, got %v", err)
			}
		})
	}
}

// waitActive waits until backend pid is running a statement, watched over a direct connection.
func waitActive(t *testing.T, pid uint32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, srv.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	for {
		var active bool
		err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active')", pid).Scan(&active)
		if err != nil {
			t.Fatal(err)
		}
		if active {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("backend %d never became active", pid)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestKeepAliveIsInvisibleToTheUserspaceProxy: keepalive probes are segments without payload
// that the kernel answers itself; no byte reaches read(2), so a userspace hop's idle timer (here
// the proxy's BlackholeIdle, like a userspace load balancer's) never sees them and the flow is
// swallowed although keepalive runs every 300 ms.
func TestKeepAliveIsInvisibleToTheUserspaceProxy(t *testing.T) {
	t.Parallel()
	_, p := holeTarget(t)
	conn := dial(t, p.Addr(), &netdial.Dialer{KeepAlive: net.KeepAliveConfig{Enable: true, Idle: 300 * time.Millisecond, Interval: 300 * time.Millisecond, Count: 5}})
	p.BlackholeIdle(1500 * time.Millisecond)
	time.Sleep(2500 * time.Millisecond) // idle past the proxy's threshold (not a timing assertion)
	if _, err := exec(conn, "SELECT 1", 3*time.Second); !isTimeout(err) {
		t.Fatalf("after 2.5 s idle with keepalive every 300 ms: %v, want the flow swallowed (a timeout)", err)
	}
}

// TestKeepAliveKeepsAConntrackFlowOpen: behind a kernel hop that forgets flows idle for 2 s
// (connection tracking, as a NAT gateway or cloud load balancer keeps state), a connection with
// keepalive every second stays usable after 5 s idle, and one without keepalive is black-holed.
func TestKeepAliveKeepsAConntrackFlowOpen(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	tr := faultproxy.IdleTimeout(t, s.Addr(), 2*time.Second)
	through := func(d *netdial.Dialer) *pgx.Conn {
		cfg, err := pgx.ParseConfig(pgharness.WithAddr(s.DSN(), tr.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		cfg.DialFunc = tr.DialFunc(d.DialContext)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	kept := through(&netdial.Dialer{KeepAlive: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 5}})
	lost := through(&netdial.Dialer{DisableKeepAlive: true})
	time.Sleep(5 * time.Second) // idle past the tracker's timeout (not a timing assertion)
	if _, err := exec(kept, "SELECT 1", 10*time.Second); err != nil {
		t.Fatalf("with keepalive every 1 s after 5 s idle: %v, want the flow alive", err)
	}
	if _, err := exec(lost, "SELECT 1", 3*time.Second); !isTimeout(err) {
		t.Fatalf("without keepalive after 5 s idle: %v, want the flow forgotten and black-holed (a timeout)", err)
	}
}
