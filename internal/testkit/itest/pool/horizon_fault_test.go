package pool_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// The schedule of issue 13: a hop swallows flows idle more than 2 s, and 4 workers each send a
// read every 3 s, just slower than the horizon. Without a learned horizon every request pays a
// PingTimeout; with it, after the first detection, connections idle past the horizon are
// replaced without a ping (the proxy does not see the TCP keepalive probes that would keep a
// real NAT's flows alive), and requests cost what they cost without the fault.
func TestFaultRequestsJustSlowerThanTheBlackHoleHorizon(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	const pingTimeout = time.Second
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
		c.PingTimeout = pingTimeout
		c.Size, c.Overflow = 4, 4
	})
	proxy.BlackholeIdle(2 * time.Second)

	const workers, rounds, every = 4, 6, 3 * time.Second
	var mu sync.Mutex
	var before, after []time.Duration // latencies before and after the horizon was learned
	errs := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			time.Sleep(time.Duration(w) * 100 * time.Millisecond)
			for range rounds {
				learned := p.Stats().IdleHorizon > 0
				start := time.Now()
				var n int
				err := p.Idempotent().QueryRow(context.Background(), "SELECT count(*) FROM kv").Scan(&n)
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					errs++
					t.Errorf("read failed: %v", err)
				}
				if learned {
					after = append(after, d)
				} else {
					before = append(before, d)
				}
				mu.Unlock()
				time.Sleep(every)
			}
		})
	}
	wg.Wait()
	st := p.Stats()
	t.Logf("before the horizon was known: %s", summary(before))
	t.Logf("after: %s", summary(after))
	t.Logf("stats: horizon %v, failed pings %d, hedged %d, replaced idle %d, opened %d",
		st.IdleHorizon, st.FailedPings, st.HedgedPings, st.ReplacedIdle, st.Opened)
	if errs != 0 {
		t.Fatalf("%d reads failed", errs)
	}
	if st.IdleHorizon == 0 {
		t.Fatal("no idle horizon was learned from pings that found no answer")
	}
	if st.ReplacedIdle == 0 {
		t.Fatal("the learned horizon changed nothing: no connection replaced before use")
	}
	if len(after) < workers*(rounds-2) {
		t.Fatalf("only %d of %d requests came after the horizon was learned", len(after), workers*rounds)
	}
	// Requests after the first detection must not wait for pings into dead flows. Each
	// request-path ping that failed is one request that did: at most the first round of
	// workers, which found the black hole before the horizon was known.
	if st.FailedPings > workers {
		t.Fatalf("%d requests waited for a ping into a dead flow; want at most the %d of the first round", st.FailedPings, workers)
	}
}

// summary gives the median, 99th percentile and maximum of ds.
func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no requests"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	return "n=" + strconv.Itoa(len(s)) + " p50=" + q(0.5).Round(time.Millisecond).String() +
		" p99=" + q(0.99).Round(time.Millisecond).String() + " max=" + s[len(s)-1].Round(time.Millisecond).String()
}
