package pool_test

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/pace"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// connLog records when the pools of a storm test dial and when their connections are up.
type connLog struct {
	mu        sync.Mutex
	dials, up []time.Time
	upDials   []time.Time // dial times of the connections in up
}

func (l *connLog) reset() {
	l.mu.Lock()
	l.dials, l.up, l.upDials = nil, nil, nil
	l.mu.Unlock()
}

// maxIn is the largest number of events in any window of length w.
func maxIn(ts []time.Time, w time.Duration) int {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, time.Time.Compare)
	best, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}

// histogram counts events per 100 ms from t0-before to t0+after.
func histogram(ts []time.Time, t0 time.Time, before, after time.Duration) []int {
	h := make([]int, (before+after)/(100*time.Millisecond))
	for _, t := range ts {
		if i := int(t.Sub(t0.Add(-before)) / (100 * time.Millisecond)); i >= 0 && i < len(h) {
			h[i]++
		}
	}
	return h
}

// dialedConn remembers when it was dialled.
type dialedConn struct {
	net.Conn
	at time.Time
}

// stormResult is what one storm run saw. t0 is the dial of the first connection established
// after the server was stopped: about when it accepted again.
type stormResult struct {
	outage      time.Duration // from the stop returning to t0
	outageDials int           // dials while the server was down
	dials, up   []time.Time   // from t0 on
	refilled    time.Duration // from t0 until every pool held all its connections again
}

// storm runs pools pgxpools of workers busy workers each (a statement of 50 ms in a loop, 50 ms
// pause after an error, as a service retrying requests) against s, stops the server for a
// second and starts it again, and logs every dial and every established connection. New,
// when not nil, gives each pool its own pace.Pacer in BeforeConnect.
func storm(t *testing.T, s *pgharness.Server, pools, workers int, newPacer func() *pace.Pacer) stormResult {
	t.Helper()
	ctx := context.Background()
	log := &connLog{}
	ps := make([]*pgxpool.Pool, pools)
	for i := range ps {
		cfg, err := pgxpool.ParseConfig(s.DSN())
		if err != nil {
			t.Fatal(err)
		}
		cfg.MaxConns = int32(workers)
		dial := cfg.ConnConfig.DialFunc
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			at := time.Now()
			log.mu.Lock()
			log.dials = append(log.dials, at)
			log.mu.Unlock()
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &dialedConn{Conn: c, at: at}, nil
		}
		cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
			nc := c.PgConn().Conn()
			if tc, ok := nc.(*tls.Conn); ok {
				nc = tc.NetConn()
			}
			log.mu.Lock()
			log.up = append(log.up, time.Now())
			if dc, ok := nc.(*dialedConn); ok {
				log.upDials = append(log.upDials, dc.at)
			}
			log.mu.Unlock()
			return nil
		}
		if newPacer != nil {
			pc := newPacer()
			cfg.BeforeConnect = func(ctx context.Context, _ *pgx.ConnConfig) error { return pc.Wait(ctx) }
		}
		if ps[i], err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		defer ps[i].Close()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range ps {
		for range workers {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := p.Exec(ctx, "SELECT pg_sleep(0.05)"); err != nil {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
						}
					}
				}
			})
		}
	}
	defer func() { close(stop); wg.Wait() }()
	full := func() bool {
		for _, p := range ps {
			if st := p.Stat(); st.AcquiredConns()+st.IdleConns() < int32(workers) { // established ones only
				return false
			}
		}
		return true
	}
	waitUntil(t, full, time.Minute, "pools to fill before the restart")

	if err := s.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	log.reset()
	time.Sleep(time.Second) // the outage
	if err := s.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, full, time.Minute, "pools to fill after the restart")
	time.Sleep(300 * time.Millisecond) // let the last events land in the log

	log.mu.Lock()
	dials, up, upDials := slices.Clone(log.dials), slices.Clone(log.up), slices.Clone(log.upDials)
	log.mu.Unlock()
	slices.SortFunc(dials, time.Time.Compare)
	slices.SortFunc(up, time.Time.Compare)
	slices.SortFunc(upDials, time.Time.Compare)
	if len(up) < pools*workers || len(upDials) != len(up) {
		t.Fatalf("%d connections established after the restart (%d with a logged dial), want at least %d", len(up), len(upDials), pools*workers)
	}
	t0 := upDials[0] // the first dial that reached the server again
	r := stormResult{outage: t0.Sub(stopped), up: up, refilled: up[pools*workers-1].Sub(t0)}
	i, _ := slices.BinarySearchFunc(dials, t0, time.Time.Compare)
	r.outageDials, r.dials = i, dials[i:]
	return r
}

// TestPacerPreventsAReconnectStorm runs the storm the pace.Pacer exists for: 30 pools (30 replicas
// of a service) of 5 busy connections each against one server that stops for a second and
// comes back. It reports dials and established connections per 100 ms from the moment the
// server accepts again, without a pace.Pacer, with the default pace.Pacer, and with a slow one (2/s,
// burst 1), and checks each pace.Pacer's bound: in any 100 ms at most
// pools * (burst + rate * (100 ms + one jitter interval)) dials.
func TestPacerPreventsAReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: runs without -short, against Docker")
	}
	startCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := pgharness.Start(startCtx, pgharness.Options{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	const pools, workers = 30, 5
	tests := []struct {
		name        string
		rate        float64 // 0: no pace.Pacer
		burst       int
		peakOver100 int // filled in
	}{
		{name: "unpaced"},
		{name: "default pace.Pacer", rate: pace.DefaultRate, burst: pace.DefaultBurst},
		{name: "slow pace.Pacer", rate: 2, burst: 1},
	}
	bound := func(rate float64, burst int) int {
		return int(float64(pools) * (float64(burst) + rate*0.2) * 1.25) // + 25% for scheduling
	}
	for i := range tests {
		tt := &tests[i]
		t.Run(tt.name, func(t *testing.T) {
			var np func() *pace.Pacer
			if tt.rate > 0 {
				np = func() *pace.Pacer { return pace.New(tt.rate, tt.burst) }
			}
			r := storm(t, s, pools, workers, np)
			tt.peakOver100 = maxIn(r.dials, 100*time.Millisecond)
			t.Logf("%s, %d pools x %d connections: server down %v, %d dials meanwhile (%.0f/s); after it accepted: %d dials, peak %d per 100 ms; %d connections up, peak %d per 100 ms; all pools full after %v",
				tt.name, pools, workers, r.outage.Round(10*time.Millisecond), r.outageDials, float64(r.outageDials)/r.outage.Seconds(),
				len(r.dials), tt.peakOver100, len(r.up), maxIn(r.up, 100*time.Millisecond), r.refilled.Round(10*time.Millisecond))
			t.Logf("dials per 100 ms from then on:           %v", histogram(r.dials, r.dials[0], 0, 1500*time.Millisecond))
			t.Logf("connections up per 100 ms from then on: %v", histogram(r.up, r.dials[0], 0, 1500*time.Millisecond))
			if tt.rate > 0 {
				if b := bound(tt.rate, tt.burst); tt.peakOver100 > b {
					t.Errorf("%d dials in 100 ms, want at most %d", tt.peakOver100, b)
				}
			}
		})
	}
	if b := bound(2, 1); tests[0].peakOver100 <= b {
		t.Errorf("unpaced: peak %d dials in 100 ms, not above the slow pace.Pacer's bound %d: the test made no storm", tests[0].peakOver100, b)
	}
}

// waitUntil polls cond every 20 ms until it holds, failing t after limit.
func waitUntil(t *testing.T, cond func() bool, limit time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting %v for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
