package pool

import (
	"context"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from linux/tcp.h (the syscall package lacks it).
const tcpUserTimeout = 0x12

// withUserTimeout wraps dial so that each TCP connection it opens has TCP_USER_TIMEOUT set to d:
// data left unacknowledged for d makes the kernel drop the connection, and the statement in
// flight fails instead of waiting through about 15 minutes of retransmissions (tcp_retries2).
// Keepalive probes only cover connections with nothing unacknowledged, so together they bound
// every dead flow, idle or busy. d <= 0 leaves dial as it is.
func withUserTimeout(dial pgconn.DialFunc, d time.Duration) pgconn.DialFunc {
	if d <= 0 {
		return dial
	}
	ms := int(d / time.Millisecond)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if sc, ok := c.(syscall.Conn); ok && network != "unix" {
			if rc, err := sc.SyscallConn(); err == nil {
				rc.Control(func(fd uintptr) {
					syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms)
				})
			}
		}
		return c, nil
	}
}

// setKeepAliveIdle sets the socket fd's TCP keepalive idle time to d (whole seconds, at least
// one): the kernel probes a flow idle that long, and again each time it has been idle that
// long since the last answered probe (the interval applies to unanswered probes only). Linux
// applies it to an open socket at once.
func setKeepAliveIdle(fd uintptr, d time.Duration) {
	syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, max(int(d/time.Second), 1))
}
