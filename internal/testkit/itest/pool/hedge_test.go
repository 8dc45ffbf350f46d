package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// The black-hole schedule of issue 22: a hop swallows flows idle more than 2 s, and 4 workers
// each read every 3 s, with the default PingTimeout (2 s). The first wave finds its pooled
// connections black-holed; no caller waits a PingTimeout for one: a pre-ping that has not
// answered within the hedge delay (derived from the ping and connect times the pool measured)
// is given up for a new connection, and settled in the background. So every pre-ping that
// found no answer was hedged, every read succeeds, and each request opens at most one
// connection.
func TestTheFirstWaveIntoABlackHoleIsHedged(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	const workers, rounds, every = 4, 4, 3 * time.Second
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
		c.Size, c.Overflow = workers, workers
		c.WarmUp = true // the connections the first wave will find dead
	})
	read := func() (time.Duration, error) {
		start := time.Now()
		var n int
		err := p.Idempotent().QueryRow(context.Background(), "SELECT count(*) FROM kv").Scan(&n)
		return time.Since(start), err
	}
	warm := p.Stats()
	proxy.BlackholeIdle(2 * time.Second)

	var mu sync.Mutex
	var waits []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			time.Sleep(time.Duration(w) * 50 * time.Millisecond)
			for range rounds {
				time.Sleep(every)
				d, err := read()
				mu.Lock()
				waits = append(waits, d)
				if err != nil {
					errs++
					t.Errorf("read failed: %v", err)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// The hedged pings settle within PingTimeout: each found no answer.
	var st pool.Stats
	waitFor(t, func() bool { st = p.Stats(); return st.FailedPings >= st.HedgedPings })
	t.Logf("%d reads: %s; stats: hedged %d, failed pings %d, replaced idle %d, opened %d (%d before the black hole), horizon %v",
		len(waits), percentiles(waits), st.HedgedPings, st.FailedPings, st.ReplacedIdle, st.Opened, warm.Opened, st.IdleHorizon)
	if errs != 0 {
		t.Fatalf("%d reads failed", errs)
	}
	if st.HedgedPings < workers {
		t.Fatalf("%d hedged pre-pings, want at least the %d of the first wave", st.HedgedPings, workers)
	}
	// A pre-ping that found no answer within PingTimeout while its caller waited would be a
	// failed ping that was not hedged.
	if st.FailedPings != st.HedgedPings {
		t.Fatalf("%d pre-pings failed, %d were hedged: %d callers waited for a dead flow", st.FailedPings, st.HedgedPings, st.FailedPings-st.HedgedPings)
	}
	if opened := st.Opened - warm.Opened; opened > workers*rounds {
		t.Fatalf("%d connections opened for %d requests: a request opened more than one", opened, workers*rounds)
	}
}
