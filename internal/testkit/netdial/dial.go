// Package netdial dials TCP for PostgreSQL connections with the two socket settings that find a
// dead flow without a caller deadline: TCP keepalive, which finds an idle flow whose peer or path
// has gone (and, sent often enough, keeps a NAT's or load balancer's idle timer from expiring),
// and TCP_USER_TIMEOUT, which bounds how long data sent into a dead flow may stay unacknowledged.
//
// They cover different cases. Linux sends keepalive probes only while nothing is
// unacknowledged, so a statement sent into a black hole is not found by keepalive at all: without
// TCP_USER_TIMEOUT the kernel retransmits for about 15 minutes (tcp_retries2) before giving up
// (pgbouncer#138, pgcat#503). Conversely TCP_USER_TIMEOUT alone does nothing for a connection that
// sits idle, or waits for a reply, with nothing of its own in flight. Set both.
//
// pgx has no setting for either; its hook is pgconn.Config.DialFunc, which [Dialer.DialContext]
// fits.
package netdial

import (
	"context"
	"net"
	"strings"
	"syscall"
	"time"
)

// Dialer opens TCP connections with keepalive and, on Linux, TCP_USER_TIMEOUT. The zero value
// dials like a zero [net.Dialer] (keepalive with Go's defaults, no user timeout). It is safe for
// concurrent use once configured. Unix-socket addresses are dialled without the TCP settings.
type Dialer struct {
	// Timeout bounds the connect (as [net.Dialer.Timeout]); ctx bounds it too. 0 means no
	// limit other than ctx.
	Timeout time.Duration

	// KeepAlive configures TCP keepalive: with Enable set, the first probe goes out after Idle
	// with nothing received, then one every Interval, and the connection fails with ETIMEDOUT
	// after Count unanswered probes, so an idle dead flow is found within about
	// Idle + Interval*Count. Fields left 0 take Go's defaults (15 s, 15 s, 9). Without Enable,
	// DisableKeepAlive decides.
	KeepAlive net.KeepAliveConfig

	// DisableKeepAlive turns keepalive off when KeepAlive.Enable is false (otherwise Go's
	// defaults apply, as with a zero net.Dialer).
	DisableKeepAlive bool

	// UserTimeout sets TCP_USER_TIMEOUT (Linux only; ignored elsewhere): the longest data sent
	// may stay unacknowledged, retransmissions included, before the connection fails with
	// ETIMEDOUT. It also bounds the connect handshake and, with keepalive on, caps how long
	// keepalive probing may go unanswered. 0 leaves the system default (about 15 minutes).
	UserTimeout time.Duration
}

// DialContext connects to addr on network. Its signature is pgconn.DialFunc's.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.Timeout, KeepAliveConfig: d.KeepAlive}
	if !d.KeepAlive.Enable && d.DisableKeepAlive {
		nd.KeepAlive = -1
	}
	if d.UserTimeout > 0 && strings.HasPrefix(network, "tcp") {
		ms := int(d.UserTimeout.Milliseconds())
		nd.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setUserTimeout(fd, ms) }); err != nil {
				return err
			}
			return serr
		}
	}
	return nd.DialContext(ctx, network, addr)
}
