package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// A managed database fails over: the old primary turns read-only (writes get 25006), the
// standby is promoted, and the stable host name moves to it. 8 readers and 2 writers run through
// it. The pool must write again on the new primary soon after it accepts writes, with no read
// error, no write error other than an unresolvable ambiguous commit, and no write lost or
// duplicated.
func TestFailoverToAPromotedStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair := startPair(ctx, t)
	onPrimary(ctx, t, pair, `CREATE TABLE IF NOT EXISTS fo_writes (key text NOT NULL, at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE IF NOT EXISTS fo_kv (k int PRIMARY KEY, v text);
		INSERT INTO fo_kv SELECT i, 'v' || i FROM generate_series(1, 100) i ON CONFLICT DO NOTHING`)
	p := pairPool(ctx, t, pair, 10, 10)

	var (
		stop                 atomic.Bool
		wg                   sync.WaitGroup
		mu                   sync.Mutex
		readErrs, writeErrs  []error
		acked, ambiguous     []string
		promotedAt           atomic.Int64 // unix nanoseconds when the standby accepted writes
		firstWriteAfter      atomic.Int64
		reads, writesOldHost atomic.Int64
	)
	for r := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				var v string
				err := p.Idempotent().QueryRow(ctx, "SELECT v FROM fo_kv WHERE k = $1", 1+(i+r)%100).Scan(&v)
				reads.Add(1)
				if err != nil {
					mu.Lock()
					readErrs = append(readErrs, err)
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w%d-%d", w, i)
				var port int
				err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "INSERT INTO fo_writes (key) VALUES ($1)", key); err != nil {
						return err
					}
					return tx.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port)
				})
				now := time.Now().UnixNano()
				mu.Lock()
				var amb *pool.AmbiguousCommitError
				switch {
				case err == nil:
					acked = append(acked, key)
					if at := promotedAt.Load(); at != 0 && now > at {
						firstWriteAfter.CompareAndSwap(0, now)
					}
				case errors.As(err, &amb):
					ambiguous = append(ambiguous, key)
				default:
					writeErrs = append(writeErrs, err)
				}
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}

	time.Sleep(time.Second)
	if err := pair.Primary.SetReadOnly(ctx, true); err != nil {
		t.Fatal(err)
	}
	// The standby replays what the old primary committed before it is promoted, as a planned
	// failover or synchronous replication ensures; without it the last commits are lost to
	// asynchronous replication, whatever the client did.
	if err := pair.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pair.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	promotedAt.Store(time.Now().UnixNano())
	pair.MoveName()
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()

	st := p.Stats()
	var first time.Duration
	if f := firstWriteAfter.Load(); f != 0 {
		first = time.Duration(f - promotedAt.Load())
	}
	t.Logf("reads %d (errors %d), writes acknowledged %d, ambiguous %d, errors %d; first write %v after the promotion; failovers suspected %d, paced connections %d",
		reads.Load(), len(readErrs), len(acked), len(ambiguous), len(writeErrs), first, st.Failovers, st.Paced)
	_ = writesOldHost.Load()
	for _, err := range append(readErrs, writeErrs...) {
		t.Errorf("caller saw: %v", err)
	}
	if firstWriteAfter.Load() == 0 {
		t.Fatal("no write succeeded after the promotion")
	}

	// Every acknowledged write is on the new primary exactly once; none that failed is.
	check, err := pgx.Connect(ctx, pgharness.WithAddr(pair.StableDSN(), pair.Standby.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(ctx)
	count := func(key string) int {
		var n int
		if err := check.QueryRow(ctx, "SELECT count(*) FROM fo_writes WHERE key = $1", key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, k := range acked {
		if n := count(k); n != 1 {
			t.Errorf("acknowledged write %s stored %d times on the new primary", k, n)
		}
	}
	for _, k := range ambiguous {
		if n := count(k); n > 1 {
			t.Errorf("ambiguous write %s stored %d times", k, n)
		}
	}
	if st.Failovers == 0 {
		t.Error("the pool never noticed the read-only primary")
	}
}

// startPair starts a primary and a streaming standby for t, removed when t ends.
func startPair(ctx context.Context, t *testing.T) *pgharness.Pair {
	t.Helper()
	pgharness.Require(t, srv)
	pair, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	return pair
}

// onPrimary runs sql on the pair's primary, over a connection of its own.
func onPrimary(ctx context.Context, t *testing.T, pair *pgharness.Pair, sql string) {
	t.Helper()
	setup, err := pgx.Connect(ctx, pgharness.WithAddr(pair.StableDSN(), pair.Primary.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close(ctx)
	if _, err := setup.Exec(ctx, sql); err != nil {
		t.Fatal(err)
	}
}

// pairPool opens a pool of size + overflow connections on the pair's stable name, which
// follows the primary through the pair's resolver; it closes when t ends.
func pairPool(ctx context.Context, t *testing.T, pair *pgharness.Pair, size, overflow int) *pool.Pool {
	t.Helper()
	cfg, err := config.Parse(pair.StableDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Size, cfg.Overflow = size, overflow
	p, err := pool.New(ctx, cfg, pool.WithPgxConfig(func(pc *pgxpool.Config) {
		pc.ConnConfig.LookupFunc = pair.Resolver().LookupFunc
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}
