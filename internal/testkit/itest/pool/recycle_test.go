package pool_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
)

// lifetimes records how long each connection lived, through pgx's hooks.
type lifetimes struct {
	mu     sync.Mutex
	opened map[*pgx.Conn]time.Time
	lived  []time.Duration
}

func (l *lifetimes) hooks(pc *pgxpool.Config) {
	pc.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		l.mu.Lock()
		l.opened[c] = time.Now()
		l.mu.Unlock()
		return nil
	}
	pc.BeforeClose = func(c *pgx.Conn) {
		l.mu.Lock()
		if at, ok := l.opened[c]; ok {
			l.lived = append(l.lived, time.Since(at))
		}
		l.mu.Unlock()
	}
}

// recycleSpread runs a pool of 10 busy connections with Recycle 2 s and the given jitter until 10
// have been recycled, and returns the range of their lifetimes.
func recycleSpread(t *testing.T, dsn string, jitter time.Duration) time.Duration {
	t.Helper()
	l := &lifetimes{opened: map[*pgx.Conn]time.Time{}}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Size, cfg.Overflow, cfg.WarmUp = 10, 0, true
	cfg.Recycle, cfg.RecycleJitter = 2*time.Second, jitter
	cfg.HealthCheckPeriod = 100 * time.Millisecond
	p, err := pool.New(t.Context(), cfg, pool.WithPgxConfig(l.hooks))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Callers keep every connection busy, so each is found expired the moment it is: pgxpool's
	// health check alone would close expired connections in its own rhythm.
	var stop sync.WaitGroup
	done := make(chan struct{})
	for range 10 {
		stop.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				p.Exec(context.Background(), "SELECT 1")
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	defer stop.Wait()
	defer close(done)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.lived)
		l.mu.Unlock()
		if n >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d connections recycled in 30 s", n)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lo, hi := l.lived[0], l.lived[0]
	for _, d := range l.lived[:10] {
		lo, hi = min(lo, d), max(hi, d)
	}
	return hi - lo
}

// Connections opened together must not all be recycled together: synchronized recycling made
// TLS handshake storms (PostHog/posthog#49745), and pgx's lifetime jitter once did not jitter
// (jackc/pgx#1437). With RecycleJitter the lifetimes of connections opened together spread
// over the jitter window; without it they do not.
func TestRecycleJitterSpreadsReconnects(t *testing.T) {
	dsn := freshDB(t)
	const jitter = 2 * time.Second
	without := recycleSpread(t, dsn, 0)
	with := recycleSpread(t, dsn, jitter)
	t.Logf("range of 10 lifetimes: %v without jitter, %v with a jitter of %v", without.Round(time.Millisecond), with.Round(time.Millisecond), jitter)
	if with < jitter/4 {
		t.Fatalf("with a %v jitter the lifetimes range over only %v: recycling is not spread", jitter, with)
	}
	if with <= without {
		t.Fatalf("lifetimes range over %v with jitter and %v without: the jitter spread nothing", with, without)
	}
}
