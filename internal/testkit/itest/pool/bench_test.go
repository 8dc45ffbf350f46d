package pool_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// benchTargets returns a pgsteady pool and a bare pgxpool with the same sizes on dsn.
func benchTargets(b *testing.B, dsn string) map[string]func(ctx context.Context, k int, v *string) error {
	cfg, err := config.Parse(dsn)
	if err != nil {
		b.Fatal(err)
	}
	p := newPool(b, dsn, nil)
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	pc.MaxConns = int32(cfg.MaxConns())
	bare, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bare.Close)
	return map[string]func(ctx context.Context, k int, v *string) error{
		"pgsteady": func(ctx context.Context, k int, v *string) error {
			return p.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(v)
		},
		"pgxpool": func(ctx context.Context, k int, v *string) error {
			return bare.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(v)
		},
	}
}

// BenchmarkQueryRow compares the no-fault cost of an indexed single-row read through pgsteady
// with the same read through a bare pgxpool of the same size, in one run.
func BenchmarkQueryRow(b *testing.B) {
	targets := benchTargets(b, freshDB(b))
	for _, name := range []string{"pgxpool", "pgsteady"} {
		run := targets[name]
		b.Run(name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			var v string
			k := 0
			for b.Loop() {
				k = k%100 + 1
				if err := run(ctx, k, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/serial-cancelable-ctx", func(b *testing.B) {
			// An HTTP handler's r.Context(): cancelable, no deadline. pgsteady then needs a
			// context.WithDeadline per acquire for its budget, where one that cannot be canceled
			// shares a timer (see budgets).
			b.ReportAllocs()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var v string
			k := 0
			for b.Loop() {
				k = k%100 + 1
				if err := run(ctx, k, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4) // 8 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				var v string
				k := 0
				for pb.Next() {
					k = k%100 + 1
					if err := run(ctx, k, &v); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkQueryRowRatio is BenchmarkQueryRow's read through pgxpool and pgsteady in turns, one
// call each, the first of the pair alternating, with an HTTP request's context (cancelable, no
// deadline) and without: it reports each one's time per call and the no-fault ratio (pgxpool's
// time ÷ pgsteady's). Both meet the same load at the same moment, which on a shared machine
// matters more than the difference between them.
func BenchmarkQueryRowRatio(b *testing.B) {
	targets := benchTargets(b, freshDB(b))
	runs := [2]func(ctx context.Context, k int, v *string) error{targets["pgxpool"], targets["pgsteady"]}
	cancelable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{{"serial", context.Background()}, {"serial-cancelable-ctx", cancelable}} {
		b.Run(tc.name, func(b *testing.B) {
			var spent [2]time.Duration
			var v string
			n := 0
			for b.Loop() {
				n++
				for j := range 2 {
					i := (n + j) % 2
					t0 := time.Now()
					if err := runs[i](tc.ctx, n%100+1, &v); err != nil {
						b.Fatal(err)
					}
					spent[i] += time.Since(t0)
				}
			}
			b.ReportMetric(float64(spent[0].Nanoseconds())/float64(n), "pgxpool-ns/call")
			b.ReportMetric(float64(spent[1].Nanoseconds())/float64(n), "pgsteady-ns/call")
			b.ReportMetric(float64(spent[0])/float64(spent[1]), "ratio")
		})
	}
}

// BenchmarkPrePingWithLatency runs the same read through a fault proxy adding 1 ms each way
// (2 ms per round trip). A connection used within PrePingAfter is not pinged, so a request pays
// the query's round trip and nothing more: compare with pgxpool, which skips its ping under
// 1 s of idleness too.
func BenchmarkPrePingWithLatency(b *testing.B) {
	dsn := freshDB(b)
	proxy := newProxy(b)
	proxy.SetLatency(time.Millisecond)
	targets := benchTargets(b, pgharness.WithAddr(dsn, proxy.Addr()))
	for _, name := range []string{"pgxpool", "pgsteady"} {
		run := targets[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			var v string
			for b.Loop() {
				if err := run(ctx, 1, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTx is the cost of commit resolution: the same write transaction (one UPDATE) and
// read-only transaction (one SELECT) through Tx with resolution (the default: the transaction
// id is learned in BEGIN's round trip) and without (pool.WithoutCommitResolution), in one run.
// Read-only transactions skip the id either way.
func BenchmarkTx(b *testing.B) {
	dsn := freshDB(b)
	pools := map[string]*pool.Pool{
		"resolve":   newPool(b, dsn, nil),
		"noresolve": newPool(b, dsn, nil, pool.WithoutCommitResolution()),
	}
	for _, name := range []string{"noresolve", "resolve"} {
		p := pools[name]
		for _, mode := range []pgx.TxAccessMode{pgx.ReadWrite, pgx.ReadOnly} {
			b.Run(name+"/"+string(mode), func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				k := 0
				for b.Loop() {
					k = k%100 + 1
					err := p.Tx(ctx, pgx.TxOptions{AccessMode: mode}, func(tx pgx.Tx) error {
						if mode == pgx.ReadOnly {
							var v string
							return tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
						}
						_, err := tx.Exec(ctx, "UPDATE kv SET v = v WHERE k = $1", k)
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
