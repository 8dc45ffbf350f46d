package pool_test

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// A caller that finds no idle connection may wait for one in use to come back rather than
// open one (the spike rule, spike.go), up to a connect time before it looks again. A
// connection in use that breaks never comes back: its waiter opens one in its place at once.
// It did not, and waited out its connect time first: in faultbench's stall row (every flow
// reset each second, so every connection in use broke together) pgsteady served 0.49-0.77
// times pgxpool's reads, with a p99 of 0.8-1.8 s against pgxpool's 0.5-0.9 s; woken, 1.07-1.39
// times, p99 0.4-0.8 s against 0.6-1.3 s (three runs each, alternated).
func TestAWaiterOpensAtOnceWhenTheConnectionItWaitsForBreaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const connect = 100 * time.Millisecond // each connect takes this long (fake time)
		s := fakeServer(t, func(pgfake.Query) pgfake.Reply { return oneRow })
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			time.Sleep(connect)
			return s.Dial(ctx, network, addr)
		}
		p := fakePool(t, s, func(c *config.Config) {
			c.Size, c.Overflow, c.LazyStart = 4, 0, true
		}, pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = dial }))

		held, err := p.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan time.Time)
		go func() {
			var v string
			if err := p.Idempotent().QueryRow(t.Context(), "SELECT 1").Scan(&v); err != nil {
				t.Errorf("the waiter's read: %v", err)
			}
			read <- time.Now()
		}()
		synctest.Wait()
		if st := p.Stats(); st.ReturnWaits != 1 {
			t.Fatalf("ReturnWaits %d: the reader did not wait for the connection in use", st.ReturnWaits)
		}

		time.Sleep(10 * time.Millisecond)
		s.Kill(1)
		if _, err := held.Exec(t.Context(), "SELECT 1"); err == nil {
			t.Fatal("Exec on a killed connection succeeded")
		}
		broke := time.Now()
		held.Release()
		if took := (<-read).Sub(broke); took != connect {
			t.Fatalf("the waiter's read ended %v after its connection broke, want one connect (%v): it waited for a connection that would never come back", took, connect)
		}
	})
}
