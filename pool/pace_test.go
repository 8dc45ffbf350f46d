package pool_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// faultyDial dials s, except that the network may fail some connects while the server stays
// up and answers every other: while stalled a connect gets no answer until reset resets every
// such flow (the network stalls, then a middlebox resets the flows it held); the next resets
// connects are reset before the server's first word; the next refusals are refused.
type faultyDial struct {
	s        *pgfake.Server
	mu       sync.Mutex
	stalled  bool
	held     []net.Conn // the server ends of the stalled flows
	resets   int
	refusals int
}

func (d *faultyDial) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case d.refusals > 0:
		d.refusals--
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	case d.resets > 0:
		d.resets--
		client, server := net.Pipe()
		server.Close()
		return client, nil
	case d.stalled:
		client, server := net.Pipe()
		d.held = append(d.held, server)
		return client, nil
	}
	return d.s.Dial(ctx, network, addr)
}

func (d *faultyDial) set(f func(d *faultyDial)) {
	d.mu.Lock()
	f(d)
	d.mu.Unlock()
}

// reset ends the stall, resetting every flow it held.
func (d *faultyDial) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.held {
		c.Close()
	}
	d.held, d.stalled = nil, false
}

// Connect pacing is for a server that is down or overloaded, which every replica of a service
// meets at once; it slows every new connection for 10 s. A connect that the network reset
// while the server answers others is no such sign: pacing then only slows the pool's recovery
// from the fault. Seen in faultbench's "answers stalled then flows reset" row: the resets of
// each stall turned pacing on for the next 10 s (74 of 80 connections paced, a read failed
// after its 10 s deadline, p99 9.2 s where pgxpool had 2.0 s), and still (90 paced) when only
// a connect begun after another had failed counted, on a machine slow enough that connects
// begun after one stall's resets were caught by the next. So an outage is confirmed by the
// server's word or silence twice in a row (connects refused, refused at startup, or
// unanswered within the connect timeout, the second begun after the first had failed, none
// working in between), or, for a connect the network cut, by a new connection that gets no
// answer either.
func TestConnectPacingWaitsForAConfirmedOutage(t *testing.T) {
	tests := []struct {
		name       string
		fault      func(s *pgfake.Server, d *faultyDial)
		readers    int  // reading at once while the fault lasts
		silent     bool // stalled flows are never reset: connects wait out the connect timeout
		wantPacing bool // connections opened after the fault are paced
	}{
		{
			name:    "a connect stalled then reset by the network, the next one works: not an outage",
			fault:   func(_ *pgfake.Server, d *faultyDial) { d.set(func(d *faultyDial) { d.stalled = true }) },
			readers: 1,
		},
		{
			name:    "connects stalled then reset together, their retries work: not an outage",
			fault:   func(_ *pgfake.Server, d *faultyDial) { d.set(func(d *faultyDial) { d.stalled = true }) },
			readers: 4,
		},
		{
			name:    "one connect refused, the next one works: not an outage",
			fault:   func(_ *pgfake.Server, d *faultyDial) { d.set(func(d *faultyDial) { d.refusals = 1 }) },
			readers: 1,
		},
		{
			name:       "connects unanswered within the connect timeout one after the other: the server is hung",
			fault:      func(_ *pgfake.Server, d *faultyDial) { d.set(func(d *faultyDial) { d.stalled = true }) },
			readers:    1,
			silent:     true,
			wantPacing: true,
		},
		{
			name:       "connects refused one after the other: the server is down",
			fault:      func(s *pgfake.Server, _ *faultyDial) { s.Down(true) },
			readers:    1,
			wantPacing: true,
		},
		{
			name:       "every connect reset, a new connection unanswered too: a server down behind a TCP proxy",
			fault:      func(_ *pgfake.Server, d *faultyDial) { d.set(func(d *faultyDial) { d.resets = 1000 }) },
			readers:    1,
			wantPacing: true,
		},
		{
			name:       "connects refused at startup one after the other: the server is starting up",
			fault:      func(s *pgfake.Server, _ *faultyDial) { s.Refuse(startingUp) },
			readers:    1,
			wantPacing: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := fakeServer(t, func(pgfake.Query) pgfake.Reply { return oneRow })
				d := &faultyDial{s: s}
				p := fakePool(t, s, func(c *config.Config) {
					c.Size, c.Overflow, c.LazyStart, c.ConnectTimeout = 4, 0, true, 500*time.Millisecond
				}, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = d.dial }))

				tt.fault(s, d)
				var wg sync.WaitGroup
				for range tt.readers {
					wg.Go(func() {
						ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
						defer cancel()
						var n string
						p.Idempotent().QueryRow(ctx, "SELECT 1").Scan(&n) // fails while the server is down
					})
				}
				if !tt.silent {
					synctest.Wait() // every reader is connecting, or waiting to retry
					d.reset()
				}
				wg.Wait()
				d.reset()
				d.set(func(d *faultyDial) { d.resets = 0 })
				s.Down(false)
				s.Refuse(nil)

				p.Reset() // every later read opens a new connection
				var n string
				if err := p.Idempotent().QueryRow(t.Context(), "SELECT 1").Scan(&n); err != nil {
					t.Fatalf("read after the fault: %v", err)
				}
				if st := p.Stats(); (st.Paced > 0) != tt.wantPacing {
					t.Fatalf("%d connections paced after the fault, want pacing %v (stats %+v)", st.Paced, tt.wantPacing, st)
				}
			})
		})
	}
}

// The server is named through the application's own resolver (pgx's LookupFunc: service
// discovery, a failover's stable name), which the system's does not know. The probe that
// checks whether a server answers after a connect was cut dials the server as connections do,
// through that resolver: dialled by its name, it found nothing, and took every cut connect
// for an outage.
func TestTheOutageProbeFindsTheServerAsConnectionsDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, func(pgfake.Query) pgfake.Reply { return oneRow })
		d := &faultyDial{s: s}
		cfg, err := config.Parse(strings.Replace(pgfake.DSN, "127.0.0.1:5432", "db.service.internal:5432", 1) + "&pgsteady_allow_insecure=true")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Size, cfg.Overflow, cfg.LazyStart = 4, 0, true
		p, err := pool.New(t.Context(), cfg, pool.WithPgxConfig(func(pc *pgxpool.Config) {
			pc.ConnConfig.LookupFunc = func(_ context.Context, host string) ([]string, error) {
				if host != "db.service.internal" {
					return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
				}
				return []string{"10.1.2.3"}, nil
			}
			pc.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr != "10.1.2.3:5432" {
					return nil, &net.OpError{Op: "dial", Net: network, Err: &net.DNSError{Err: "no such host", Name: addr, IsNotFound: true}}
				}
				return d.dial(ctx, network, addr)
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)

		d.set(func(d *faultyDial) { d.stalled = true })
		read := make(chan error)
		go func() {
			var v string
			read <- p.Idempotent().QueryRow(t.Context(), "SELECT 1").Scan(&v)
		}()
		synctest.Wait() // the read's connect is stalled
		d.reset()
		if err := <-read; err != nil {
			t.Fatalf("read across a cut connect: %v", err)
		}
		synctest.Wait() // the probe has settled

		p.Reset()
		var v string
		if err := p.Idempotent().QueryRow(t.Context(), "SELECT 1").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if st := p.Stats(); st.Paced != 0 {
			t.Fatalf("%d connections paced: the probe did not find the server its connections reach", st.Paced)
		}
	})
}
