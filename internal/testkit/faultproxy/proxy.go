// Package faultproxy is a TCP proxy on loopback that injects network faults between a client and
// a server: added latency, connection resets, stalled responses, and the silent black-holing of
// idle flows that cloud NATs and load balancers do (Azure's load balancer after 4 minutes, AWS's
// NAT gateway after 350 s): once a flow has carried no bytes for longer than a threshold, every
// later byte in either direction is swallowed, and neither side gets a RST or a FIN.
//
// Beside the userspace proxy the package makes faults in the kernel, where TCP itself meets
// them: a [Hole] drops the packets of a loopback port (nftables), so keepalive probes,
// retransmissions and TCP_USER_TIMEOUT behave as on a dead network path; a [Tracker] is a hop
// with connection tracking that forgets idle flows, as a NAT does, and that TCP keepalive keeps
// open. The proxy cannot show either: it terminates TCP on both sides, so keepalive probes and
// retransmissions end at its own sockets and never reach its idle timer.
//
// It is a test tool: it listens on 127.0.0.1 only.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards connections accepted on [Proxy.Addr] to a target address. Its methods are safe
// for concurrent use.
type Proxy struct {
	ln     net.Listener
	target atomic.Pointer[string]

	latency       atomic.Int64 // time.Duration added to every chunk, each direction
	blackholeIdle atomic.Int64 // time.Duration; 0 = off
	stall         atomic.Bool  // swallow server-to-client bytes

	mu     sync.Mutex
	flows  map[*flow]struct{}
	closed bool
	wg     sync.WaitGroup
}

type flow struct {
	client, server net.Conn
	last           atomic.Int64 // unix nanoseconds of the last forwarded byte
	dead           atomic.Bool  // black-holed
}

// New starts a proxy on 127.0.0.1 with a free port, forwarding to target (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return serve(ln, target), nil
}

// serve starts a proxy accepting on ln.
func serve(ln net.Listener, target string) *Proxy {
	p := &Proxy{ln: ln, flows: map[*flow]struct{}{}}
	p.target.Store(&target)
	p.wg.Add(1)
	go p.accept()
	return p
}

// Start is [New] for a test: it fails tb if the proxy cannot start, and closes the proxy when
// tb ends.
func Start(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := New(target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// Addr is the proxy's listening address, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetTarget sends the flows accepted from now on to target (host:port); open flows stay with the
// old one. A proxy address then works as a stable name that moves at a failover, for clients
// that cannot be given a LookupFunc.
func (p *Proxy) SetTarget(target string) { p.target.Store(&target) }

// SetLatency delays every chunk of bytes by d in each direction (so a round trip costs 2*d more).
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// BlackholeIdle makes the proxy silently swallow, from then on, all traffic of any flow that
// has been idle (no bytes either way) for longer than threshold. 0 turns the check off for
// flows not yet swallowed; swallowed flows stay dead.
func (p *Proxy) BlackholeIdle(threshold time.Duration) { p.blackholeIdle.Store(int64(threshold)) }

// StallResponses swallows every byte the server sends from now on while still forwarding the
// client's bytes: the server acts on a request whose answer never arrives. [Proxy.ResetAll] then
// makes the loss visible to the client. Resume undoes it.
func (p *Proxy) StallResponses() { p.stall.Store(true) }

// Resume stops [Proxy.StallResponses].
func (p *Proxy) Resume() { p.stall.Store(false) }

// Flows reports how many connections are open through the proxy.
func (p *Proxy) Flows() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flows)
}

// ResetSwallowed resets the flows that the idle black hole ([Proxy.BlackholeIdle]) has
// swallowed, as a NAT that has forgotten a flow answers the next packet of either side with a
// RST, and returns how many. The others are left alone.
func (p *Proxy) ResetSwallowed() int {
	p.mu.Lock()
	var dead []*flow
	for f := range p.flows {
		if f.dead.Load() {
			dead = append(dead, f)
		}
	}
	p.mu.Unlock()
	for _, f := range dead {
		f.reset()
	}
	return len(dead)
}

// ResetAll aborts every open flow with a TCP RST on both sides and reports how many it aborted.
func (p *Proxy) ResetAll() int {
	p.mu.Lock()
	flows := make([]*flow, 0, len(p.flows))
	for f := range p.flows {
		flows = append(flows, f)
	}
	p.mu.Unlock()
	for _, f := range flows {
		f.reset()
	}
	return len(flows)
}

// Close stops accepting, resets every flow and waits for the proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.ResetAll()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.DialTimeout("tcp", *p.target.Load(), 5*time.Second)
		if err != nil {
			abort(c)
			continue
		}
		f := &flow{client: c, server: s}
		f.last.Store(time.Now().UnixNano())
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			f.reset()
			continue
		}
		p.flows[f] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(f, c, s, false)
		go p.pump(f, s, c, true)
	}
}

// pump copies src to dst chunk by chunk, applying the faults. When either side ends, both do.
func (p *Proxy) pump(f *flow, src, dst net.Conn, fromServer bool) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.flows, f)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && p.pass(f, fromServer) {
			if d := time.Duration(p.latency.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				abort(dst)
			}
			return
		}
	}
}

// pass decides whether a chunk goes through, and marks the flow active when it does.
func (p *Proxy) pass(f *flow, fromServer bool) bool {
	if f.dead.Load() {
		return false
	}
	now := time.Now().UnixNano()
	if t := p.blackholeIdle.Load(); t > 0 && now-f.last.Load() > t {
		f.dead.Store(true)
		return false
	}
	if fromServer && p.stall.Load() {
		return false
	}
	f.last.Store(now)
	return true
}

func (f *flow) reset() {
	abort(f.client)
	abort(f.server)
}

// abort closes c with SO_LINGER 0, so the peer gets a RST rather than a FIN.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}
