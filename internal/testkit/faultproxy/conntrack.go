package faultproxy

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Tracker is a stateful hop with an idle timeout, made of the kernel's connection tracking: a
// private network namespace whose nf_conntrack_tcp_timeout_established is the timeout, with a
// [Proxy] listening inside it and forwarding to the target outside. A flow that carries no
// packet at all for longer than the timeout is forgotten, and from then on every packet of it is
// dropped in both directions, without a RST, as a NAT gateway or cloud load balancer does (AWS
// NAT after 350 s, Azure's load balancer after 4 minutes). Any packet refreshes the timer, TCP
// keepalive probes and their acknowledgements included, which a userspace hop such as
// [Proxy.BlackholeIdle] never sees: this is the hop on which keepalive settings can be tested.
//
// Clients reach [Tracker.Addr] only from inside the namespace: dial through [Tracker.DialFunc].
// Linux only; it needs the ip command (iproute2), nft (nftables) and CAP_NET_ADMIN. Its methods
// are safe for concurrent use.
type Tracker struct {
	ns        string
	proxy     *Proxy
	closeOnce sync.Once
	closeErr  error
}

// IdleTimeout is [NewIdleTimeout] for a test: it fails tb if the tracker cannot be made and
// removes it when tb ends.
func IdleTimeout(tb testing.TB, target string, idle time.Duration) *Tracker {
	tb.Helper()
	t, err := NewIdleTimeout(target, idle)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { t.Close() })
	return t
}

// Addr is the tracker's listening address, 127.0.0.1:port inside its namespace.
func (t *Tracker) Addr() string { return t.proxy.Addr() }

// Proxy is the proxy inside the namespace (its faults work as usual).
func (t *Tracker) Proxy() *Proxy { return t.proxy }

// DialFunc wraps dial (a pgconn.DialFunc, for example a netdial Dialer's DialContext) so that
// the socket it creates lives in the tracker's namespace, where [Tracker.Addr] is reachable.
func (t *Tracker) DialFunc(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		if nserr := inNetns(t.ns, func() error { c, err = dial(ctx, network, addr); return nil }); nserr != nil {
			return nil, nserr
		}
		return c, err
	}
}
