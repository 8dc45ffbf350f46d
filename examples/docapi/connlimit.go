package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP connection limits and timeouts. An API client sends a request and reads its answer
// within seconds; a connection that sends nothing, or idles between requests, holds a file
// descriptor and a goroutine for nothing, so docapi keeps them short and bounded.
const (
	// defaultMaxConns is how many client connections docapi holds at once
	// (DOCAPI_MAX_CONNS). Each costs a file descriptor: keep it well under the process's
	// open-file limit (ulimit -n), which also covers the pool's connections.
	defaultMaxConns = 1024
	// defaultMaxConnsPerAddr is how many connections one client address may hold at once
	// (DOCAPI_MAX_CONNS_PER_ADDR); an IPv6 client counts per /64. Connections from a trusted
	// proxy count only against defaultMaxConns.
	defaultMaxConnsPerAddr = 64
	// readHeaderTimeout is how long a client has to send a request's headers.
	readHeaderTimeout = 5 * time.Second
	// idleTimeout is how long a keep-alive connection waits for its next request.
	idleTimeout = 30 * time.Second
	// readTimeout bounds the reading of a whole request, upload included (5 MiB at 100 KiB/s).
	readTimeout = time.Minute
	// writeTimeout bounds the writing of a whole answer.
	writeTimeout = time.Minute
	// maxHeaderBytes bounds a request's headers.
	maxHeaderBytes = 32 << 10
)

// connLimits are the connection limits of [connGuard].
type connLimits struct {
	// total is how many connections are held at once. Default defaultMaxConns.
	total int
	// perAddr is how many connections one client address holds at once, trusted proxies
	// excepted. Default defaultMaxConnsPerAddr.
	perAddr int
}

// connGuard is a listener that bounds the connections it hands out: in all, and per client
// address. A connection over its address's share is closed at once. One over the total makes
// room by closing the connection idle the longest (between requests, or accepted and silent),
// or is closed itself when every held connection is busy. Pass connState to the http.Server,
// so that the guard knows which connections are idle. It is safe for concurrent use.
type connGuard struct {
	net.Listener
	limits  connLimits
	trusted []netip.Prefix
	log     *slog.Logger

	mu     sync.Mutex
	open   int
	byAddr map[string]int
	idle   map[*guardedConn]time.Time // idle connections, and since when

	rejected atomic.Int64 // connections closed on accept
	evicted  atomic.Int64 // idle connections closed to make room
}

// newConnGuard wraps ln. trusted are the proxies whose connections count only in the total.
func newConnGuard(ln net.Listener, limits connLimits, trusted []netip.Prefix, logger *slog.Logger) *connGuard {
	return &connGuard{Listener: ln, limits: limits, trusted: trusted, log: logger,
		byAddr: map[string]int{}, idle: map[*guardedConn]time.Time{}}
}

// Accept returns the next connection within the limits, closing those over them.
func (g *connGuard) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, counted := "", true
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			key, counted = addrKey(ap.Addr()), !trustedBy(g.trusted, ap.Addr().Unmap())
		}
		if gc := g.admit(c, key, counted); gc != nil {
			return gc, nil
		}
		g.rejected.Add(1)
		c.Close()
	}
}

// admit registers c, or answers nil when it is over a limit.
func (g *connGuard) admit(c net.Conn, key string, counted bool) *guardedConn {
	g.mu.Lock()
	if counted && g.byAddr[key] >= g.limits.perAddr {
		g.mu.Unlock()
		return nil
	}
	var victim *guardedConn
	if g.open >= g.limits.total {
		var since time.Time
		for ic, t := range g.idle {
			if victim == nil || t.Before(since) {
				victim, since = ic, t
			}
		}
		if victim == nil {
			g.mu.Unlock()
			return nil
		}
		delete(g.idle, victim)
		g.releaseLocked(victim) // counted out now: its Close only closes
	}
	gc := &guardedConn{Conn: c, g: g, key: key, counted: counted}
	g.open++
	if counted {
		g.byAddr[key]++
	}
	g.idle[gc] = time.Now() // silent until it sends its first request
	g.mu.Unlock()
	if victim != nil {
		g.evicted.Add(1)
		victim.Conn.Close()
	}
	return gc
}

// releaseLocked counts gc out, once.
func (g *connGuard) releaseLocked(gc *guardedConn) {
	if gc.released {
		return
	}
	gc.released = true
	delete(g.idle, gc)
	g.open--
	if gc.counted {
		if g.byAddr[gc.key]--; g.byAddr[gc.key] <= 0 {
			delete(g.byAddr, gc.key)
		}
	}
}

// connState is the http.Server's ConnState hook: it tells the guard which connections are idle.
func (g *connGuard) connState(c net.Conn, state http.ConnState) {
	gc, ok := c.(*guardedConn)
	if !ok {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case gc.released, state == http.StateNew: // in g.idle since it was accepted
	case state == http.StateIdle:
		g.idle[gc] = time.Now()
	case state == http.StateClosed || state == http.StateHijacked:
		g.releaseLocked(gc)
	default:
		delete(g.idle, gc)
	}
}

// held returns the connections held now.
func (g *connGuard) held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

// guardedConn is a connection handed out by a connGuard.
type guardedConn struct {
	net.Conn
	g        *connGuard
	key      string
	counted  bool // against its address's share
	released bool // counted out of the guard; under g.mu
}

// Close closes the connection and counts it out of the guard.
func (c *guardedConn) Close() error {
	c.g.mu.Lock()
	c.g.releaseLocked(c)
	c.g.mu.Unlock()
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil // evicted
	}
	return err
}

// newHTTPServer returns docapi's http.Server for h, serving the connections of g, with the
// timeouts above.
func newHTTPServer(h http.Handler, g *connGuard, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         g.connState,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
