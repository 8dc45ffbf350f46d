package main

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serveGuarded serves a's handler the way run does: behind a connGuard with limits and
// newHTTPServer's timeouts, on 127.0.0.1, with trusted proxies. It returns the base URL.
func (a *api) serveGuarded(t *testing.T, limits connLimits, trusted []netip.Prefix) (string, *connGuard) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := newConnGuard(ln, limits, trusted, a.logger)
	hs := newHTTPServer(a.handler, g, a.logger)
	done := make(chan struct{})
	go func() {
		defer close(done)
		hs.Serve(g)
	}()
	t.Cleanup(func() {
		hs.Close()
		<-done
	})
	return "http://" + ln.Addr().String(), g
}

// idleConn opens a connection from the loopback address from, sends GET /healthz on it and
// reads the answer, then leaves it open: one connection of a flood. It reports whether the
// request was answered; the connection is returned open either way (nil if the dial failed).
func idleConn(addr, from string) (net.Conn, bool) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, false
	}
	if _, err := c.Write([]byte("GET /healthz HTTP/1.1\r\nHost: docapi\r\n\r\n")); err != nil {
		return c, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	resp.Body.Close()
	return c, resp.StatusCode == http.StatusOK
}

// stillOpen reports whether the server still holds c: a read finds no EOF or reset before a
// short deadline. The deadline is a probe, not a timing assertion.
func stillOpen(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// TestConnectionFlood floods docapi with idle keep-alive connections, from one address and
// from many, and checks that it holds no more than its limits while /healthz and an
// authenticated request from another client are still answered.
func TestConnectionFlood(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	limits := connLimits{total: 100, perAddr: 20}
	base, g := a.serveGuarded(t, limits, nil)
	addr := base[len("http://"):]

	type flood struct {
		name     string
		sources  []string
		perSrc   int
		maxHeld  int // connections the server may hold at the end
		maxAnswd int // of them answered while the flood is under way, at most (0: any)
	}
	var many []string
	for i := 1; i <= 10; i++ {
		many = append(many, "127.0.1."+strconv.Itoa(i))
	}
	floods := []flood{
		{"one address", []string{"127.0.0.2"}, 200, limits.perAddr, limits.perAddr},
		{"ten addresses", many, 30, limits.total, 0},
	}
	for _, f := range floods {
		t.Run(f.name, func(t *testing.T) {
			var (
				mu       sync.Mutex
				conns    []net.Conn
				answered int
				wg       sync.WaitGroup
			)
			for _, src := range f.sources {
				for range f.perSrc {
					wg.Go(func() {
						c, ok := idleConn(addr, src)
						mu.Lock()
						defer mu.Unlock()
						if c != nil {
							conns = append(conns, c)
						}
						if ok {
							answered++
						}
					})
				}
			}
			wg.Wait()
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})

			// Another client: a fresh connection, /healthz and an authenticated list.
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			resp, err := client.Get(base + "/healthz")
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("/healthz under the flood: %v %v", resp, err)
			}
			resp.Body.Close()
			req, _ := http.NewRequest(http.MethodGet, base+"/permis/all", nil)
			req.Header.Set("Authorization", bearer(a.token))
			resp, err = client.Do(req)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("authenticated request under the flood: %v %v", resp, err)
			}
			resp.Body.Close()

			var held atomic.Int64
			for _, c := range conns {
				wg.Go(func() {
					if stillOpen(c) {
						held.Add(1)
					}
				})
			}
			wg.Wait()
			t.Logf("%d connections sent from %d addresses: %d answered, %d held at the end (server counts %d open; %d rejected, %d idle ones closed so far)",
				len(f.sources)*f.perSrc, len(f.sources), answered, held.Load(), g.held(), g.rejected.Load(), g.evicted.Load())
			if n := int(held.Load()); n > f.maxHeld {
				t.Errorf("the server holds %d of the flood's connections, want at most %d", n, f.maxHeld)
			}
			if f.maxAnswd > 0 && answered > f.maxAnswd {
				t.Errorf("%d of the flood's requests were answered, want at most %d (one address's share)", answered, f.maxAnswd)
			}
			if n := g.held(); n > limits.total {
				t.Errorf("the server counts %d connections open, want at most %d", n, limits.total)
			}
		})
	}
}
