// Package cluster_test runs pool.Cluster against the harness's real primary/standby pair:
// reads spread to the standby, read-your-writes with no stale read, and faults of the standby
// (stopped, its backends killed, killed mid-statement, its replay paused, promoted) that cost
// no read an error, and the demoted primary back as a standby of the new one.
package cluster_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp/oteltest"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// lagBound is the tests' replay-lag bound: small, so that a paused replay passes it after a few
// hundred kilobytes of writes.
const lagBound = 64 << 10

// TestCluster runs its cases in order on one pair: the faults restore the pair, the promotion,
// last, does not.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	pair := startPair(ctx, t)
	standby2, err := pair.AddStandby(ctx, pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	setup, err := pgx.Connect(ctx, pair.Primary.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, `CREATE TABLE rw (id bigint PRIMARY KEY, pad text NOT NULL DEFAULT '')`); err != nil {
		t.Fatal(err)
	}
	setup.Close(ctx)
	for _, s := range []*pgharness.Server{pair.Standby, standby2} {
		waitFor(t, "the table on the standby", func() bool {
			conn, err := pgx.Connect(ctx, s.DSN())
			if err != nil {
				return false
			}
			defer conn.Close(ctx)
			var ok bool
			return conn.QueryRow(ctx, "SELECT to_regclass('rw') IS NOT NULL").Scan(&ok) == nil && ok
		})
	}

	c := newCluster(t, pair, standby2)
	steps := []struct {
		name string
		run  func(*testing.T, *pgharness.Pair, *pool.Cluster)
	}{
		{"reads spread to the replicas", testSpread},
		{"metrics per member", testMetrics},
		{"cost of the lag checks", testCheckCost},
		{"roles discovered from a multi-host DSN", testDiscovered},
		{"the primary alone", testPrimaryAlone},
		{"Query, Do, Exec and SendBatch through the reader", testReaderMethods},
		{"read your writes, same goroutine", testReadYourWritesLoop},
		{"read your writes, concurrent", testReadYourWritesConcurrent},
		{"replica stopped and started", testReplicaStopped},
		{"replica backends killed", testReplicaKilled},
		{"replica hung (docker pause)", testReplicaHung},
		{"replicas die mid-statement", func(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
			testReplicasDieMidStatement(t, pair, c, standby2)
		}},
		{"replay paused", testReplayPaused},
		{"replica promoted", testPromoted},
		{"demoted primary joins the readers", testDemotedRejoins},
	}
	for _, s := range steps {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, pair, c) }) {
			return // the later steps assume the pair as this one leaves it
		}
	}
	logStats(t, c)
}

// testMetrics checks that otelpool publishes each member's lag and reads.
func testMetrics(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	r := oteltest.NewReader(t)
	obs, err := otelpool.NewObserver(r.Provider)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := obs.RegisterCluster(c)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	points := map[string]int{}
	for name, m := range r.Collect(t) {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			points[name] += len(d.DataPoints)
		case metricdata.Gauge[int64]:
			points[name] += len(d.DataPoints)
		}
	}
	// Three members: reads for each, connections by two states for each, a lag for each replica.
	if points["pgsteady.cluster.reads"] != 3 || points["db.client.connection.count"] != 6 || points["pgsteady.cluster.replay_lag"] != 2 {
		t.Errorf("data points: %v", points)
	}
}

// newCluster builds a cluster over the pair and the extra standby, and waits until both
// standbys take reads.
func newCluster(t *testing.T, pair *pgharness.Pair, standby2 *pgharness.Server) *pool.Cluster {
	t.Helper()
	sized := func(dsn string) *config.Config {
		cfg := parse(t, dsn)
		cfg.Size, cfg.Overflow = 8, 8
		return cfg
	}
	c, err := pool.NewCluster(t.Context(), sized(pair.Primary.DSN()), []*config.Config{sized(pair.Standby.DSN()), sized(standby2.DSN())},
		pool.WithMaxReplayLag(lagBound), pool.WithLagCheckEvery(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	waitFor(t, "the standbys to take reads", func() bool { s := c.Stats(); return s.Members[1].Readable && s.Members[2].Readable })
	return c
}

// startPair starts the harness's primary/standby pair for tb, or skips under -short.
func startPair(ctx context.Context, tb testing.TB) *pgharness.Pair {
	tb.Helper()
	if testing.Short() {
		tb.Skip("integration test: runs without -short, against Docker")
	}
	pair, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pair.Close() })
	return pair
}

// parse parses dsn.
func parse(tb testing.TB, dsn string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// admin runs sql as the superuser on s, scanning its row into dest when dest is given (also
// from a Cleanup: it does not use t's context).
func admin(t *testing.T, s *pgharness.Server, sql string, dest ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if len(dest) > 0 {
		err = conn.QueryRow(ctx, sql).Scan(dest...)
	} else {
		_, err = conn.Exec(ctx, sql)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds; a minute without is a failure (a bound on a hang, not a
// timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readers runs n goroutines reading through c.Replica() until stop is called, counting reads,
// errors and the reads a standby served; stop returns the counts and sorted latencies.
type readers struct {
	reads, errs, onStandby atomic.Int64
	mu                     sync.Mutex
	firstErrs              []error
	lat                    []time.Duration
	stop                   chan struct{}
	wg                     sync.WaitGroup
}

func startReaders(c *pool.Cluster, n int, q func() pool.Querier) *readers {
	r := &readers{stop: make(chan struct{})}
	ctx := context.Background()
	for w := range n {
		r.wg.Go(func() {
			var lat []time.Duration
			for i := 0; ; i++ {
				select {
				case <-r.stop:
					r.mu.Lock()
					r.lat = append(r.lat, lat...)
					r.mu.Unlock()
					return
				default:
				}
				start := time.Now()
				var standby bool
				var n int64
				var err error
				sql := "SELECT pg_is_in_recovery(), count(*) FROM rw WHERE id > $1"
				if q != nil {
					err = q().QueryRow(ctx, sql, w+i).Scan(&standby, &n)
				} else {
					err = c.Replica().QueryRow(ctx, sql, w+i).Scan(&standby, &n)
				}
				lat = append(lat, time.Since(start))
				r.reads.Add(1)
				switch {
				case err != nil:
					r.errs.Add(1)
					r.mu.Lock()
					if len(r.firstErrs) < 5 {
						r.firstErrs = append(r.firstErrs, err)
					}
					r.mu.Unlock()
				case standby:
					r.onStandby.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	return r
}

func (r *readers) finish(t *testing.T, what string) {
	t.Helper()
	close(r.stop)
	r.wg.Wait()
	slices.Sort(r.lat)
	t.Logf("%s: reads %d, errors %d, served by a standby %d (%.0f %%), p50 %v, p99 %v, longest %v", what,
		r.reads.Load(), r.errs.Load(), r.onStandby.Load(), 100*float64(r.onStandby.Load())/float64(max(1, r.reads.Load())),
		pct(r.lat, 50), pct(r.lat, 99), pct(r.lat, 100))
	if r.errs.Load() > 0 {
		t.Errorf("%s: %d reads failed; first: %v", what, r.errs.Load(), r.firstErrs)
	}
	if r.reads.Load() == 0 {
		t.Errorf("%s: no read ran", what)
	}
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100].Round(time.Microsecond)
}

func testSpread(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	primaryOnly := func() pool.Querier { return c.Primary().Idempotent() }
	// Warm both up (connections opened, TLS handshakes done) before measuring.
	for _, q := range []func() pool.Querier{nil, primaryOnly} {
		w := startReaders(c, 8, q)
		waitFor(t, "warm-up", func() bool { return w.reads.Load() >= 1000 })
		close(w.stop)
		w.wg.Wait()
	}
	before := c.Stats()
	r := startReaders(c, 8, nil)
	waitFor(t, "4000 reads", func() bool { return r.reads.Load() >= 4000 })
	r.finish(t, "cluster reads")
	after := c.Stats()
	for i, m := range after.Members {
		n := m.Reads - before.Members[i].Reads
		t.Logf("member %d (%s): %d reads, %.0f %%", i, m.Role, n, 100*float64(n)/float64(r.reads.Load()))
		if i > 0 && n == 0 {
			t.Errorf("standby %d served no read", i)
		}
	}
	// The same load on the primary alone, for comparison.
	p := startReaders(c, 8, primaryOnly)
	waitFor(t, "4000 reads", func() bool { return p.reads.Load() >= 4000 })
	p.finish(t, "primary-only reads")
}

// testCheckCost measures what the lag checks cost an idle cluster: the mean time of one check
// (a round trip on a pooled connection) per member.
func testCheckCost(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	before := c.Stats()
	waitFor(t, "20 rounds of checks", func() bool { return c.Stats().Checks >= before.Checks+20 })
	after := c.Stats()
	rounds := after.Checks - before.Checks
	for i, m := range after.Members {
		d := (m.CheckTime - before.Members[i].CheckTime) / time.Duration(rounds)
		t.Logf("idle lag checks: member %d (%s): %v a check, over %d rounds", i, m.Role, d.Round(time.Microsecond), rounds)
	}
}

// testDiscovered builds a cluster from one connection string listing the standby first.
func testDiscovered(t *testing.T, pair *pgharness.Pair, _ *pool.Cluster) {
	c, err := pool.NewClusterHosts(t.Context(), parse(t, pgharness.MultiHostDSN("read-write", pair.Standby, pair.Primary)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := c.Stats()
	if s.Members[0].Role != pool.RoleReplica || s.Members[1].Role != pool.RolePrimary {
		t.Fatalf("roles %s, %s; want replica, primary", s.Members[0].Role, s.Members[1].Role)
	}
	var standby bool
	if _, err := c.Exec(t.Context(), "INSERT INTO rw (id) VALUES (-1)"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby to take reads", func() bool { return c.Stats().Members[0].Readable })
	if err := c.Replica().QueryRow(t.Context(), "SELECT pg_is_in_recovery()").Scan(&standby); err != nil || !standby {
		t.Fatalf("a read went to a standby: %v (err %v)", standby, err)
	}
}

// testPrimaryAlone builds a cluster of the primary and no replica: reads go to the primary, and
// writes cost no lookup of their WAL position, since no replica could need it.
func testPrimaryAlone(t *testing.T, pair *pgharness.Pair, _ *pool.Cluster) {
	c, err := pool.NewCluster(t.Context(), parse(t, pair.Primary.DSN()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := pool.WithReadYourWrites(t.Context())
	if _, err := c.Exec(ctx, "INSERT INTO rw (id) VALUES (-2)"); err != nil {
		t.Fatal(err)
	}
	var n int
	var standby bool
	if err := c.Replica().QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM rw WHERE id = -2").Scan(&n, &standby); err != nil || n != 1 || standby {
		t.Fatalf("read back: %d rows, on a standby %v, err %v; want 1 row from the primary", n, standby, err)
	}
	if s := c.Stats(); s.WritesTracked != 0 || s.PrimaryReadsNoReplica != 1 {
		t.Errorf("writes tracked %d, reads on the primary for want of a replica %d; want 0 and 1", s.WritesTracked, s.PrimaryReadsNoReplica)
	}
}

// testReaderMethods reads through each of the Reader's methods after a write through the
// cluster's Query (INSERT ... RETURNING), with read-your-writes: each sees the write, and
// the in-flight counts return to zero.
func testReaderMethods(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	ctx := pool.WithReadYourWrites(t.Context())
	rows, err := c.Query(ctx, "INSERT INTO rw (id) SELECT g FROM generate_series(-100, -91) g RETURNING id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) != 10 {
		t.Fatalf("inserted %v, err %v", ids, err)
	}
	// Each method until a standby serves it (at first the primary does: no standby has been
	// seen to replay the write); every answer must hold the write.
	q := "SELECT id, pg_is_in_recovery() FROM rw WHERE id BETWEEN -100 AND -91 ORDER BY id"
	type row struct {
		ID      int64
		Standby bool
	}
	waitFor(t, "Query served by a standby", func() bool {
		rows, err := c.Replica().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil || len(got) != 10 {
			t.Fatalf("Query: %v, err %v", got, err)
		}
		return got[0].Standby
	})
	waitFor(t, "Do served by a standby", func() bool {
		var n int
		var standby bool
		err := c.Replica().Do(ctx, func(ctx context.Context, qr pool.Querier) error {
			n = 0
			rows, err := qr.Query(ctx, q)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var r row
				if err := rows.Scan(&r.ID, &r.Standby); err != nil {
					return err
				}
				n++
				standby = r.Standby
			}
			return rows.Err()
		})
		if err != nil || n != 10 {
			t.Fatalf("Do: %d rows, err %v", n, err)
		}
		return standby
	})
	var n int
	if tag, err := c.Replica().Exec(ctx, "SELECT 1 FROM rw WHERE id = -100"); err != nil || tag.RowsAffected() != 1 {
		t.Errorf("Exec: %v, err %v", tag, err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT count(*) FROM rw WHERE id BETWEEN -100 AND -91")
	br := c.Replica().SendBatch(ctx, b)
	if err := br.QueryRow().Scan(&n); err != nil || n != 10 {
		t.Errorf("SendBatch: %d, err %v", n, err)
	}
	if err := br.Close(); err != nil {
		t.Error(err)
	}
	// A write through the reader is the caller's error (25006 on a standby), not a fault of the
	// replica: it moves to no other member. (The primary, when no standby qualifies, takes it.)
	before := c.Stats().ReplicaFallbacks
	if _, err = c.Replica().Exec(t.Context(), "INSERT INTO rw (id) VALUES (-1000)"); err != nil && !isCode(err, "25006") {
		t.Errorf("a write through the reader: %v", err)
	}
	if after := c.Stats().ReplicaFallbacks; after != before {
		t.Errorf("a write refused by a standby moved to another member")
	}
	for _, m := range c.Stats().Members {
		if m.InFlight != 0 {
			t.Errorf("member %s: %d reads still counted in flight", m.Addr, m.InFlight)
		}
	}
}

// isCode reports whether err carries a server error with SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// testReadYourWritesLoop writes a row (by turns with Exec and in a Tx) and reads it back at
// once, 500 times: with WithReadYourWrites no read may miss its write.
func testReadYourWritesLoop(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	ctx := pool.WithReadYourWrites(t.Context())
	var stale, onStandby, plainStale int
	for i := range 500 {
		id := int64(1_000_000 + i)
		var err error
		if i%2 == 0 {
			_, err = c.Exec(ctx, "INSERT INTO rw (id) VALUES ($1)", id)
		} else {
			err = c.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO rw (id) VALUES ($1)", id)
				return err
			})
		}
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var standby bool
		if err := c.Replica().QueryRow(ctx, "SELECT count(*), pg_is_in_recovery() FROM rw WHERE id = $1", id).Scan(&n, &standby); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			stale++
		}
		if standby {
			onStandby++
		}
		// The control: a read without read-your-writes may be stale; it shows the test can tell.
		id2 := int64(2_000_000 + i)
		if _, err := c.Exec(ctx, "INSERT INTO rw (id) VALUES ($1)", id2); err != nil {
			t.Fatal(err)
		}
		if err := c.Replica().QueryRow(t.Context(), "SELECT count(*) FROM rw WHERE id = $1", id2).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			plainStale++
		}
	}
	t.Logf("write then read at once, 500 times: stale reads %d with read-your-writes (%d served by the standby), %d of 500 without it",
		stale, onStandby, plainStale)
	if stale > 0 {
		t.Errorf("%d reads with read-your-writes missed their write", stale)
	}
}

// testReadYourWritesConcurrent has one writer and 8 readers: each reader notes the highest id
// acknowledged before its read and must see it.
func testReadYourWritesConcurrent(t *testing.T, _ *pgharness.Pair, c *pool.Cluster) {
	ctx := pool.WithReadYourWrites(t.Context())
	var acked atomic.Int64
	acked.Store(3_000_000)
	if _, err := c.Exec(ctx, "INSERT INTO rw (id) VALUES ($1)", acked.Load()); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, stale, onStandby, errs atomic.Int64
	wg.Go(func() {
		for id := acked.Load() + 1; !stop.Load(); id++ {
			if _, err := c.Exec(ctx, "INSERT INTO rw (id, pad) VALUES ($1, repeat('x', 200))", id); err != nil {
				errs.Add(1)
				continue
			}
			acked.Store(id)
			time.Sleep(2 * time.Millisecond)
		}
	})
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				want := acked.Load()
				var got int64
				var standby bool
				err := c.Replica().QueryRow(ctx, "SELECT max(id), pg_is_in_recovery() FROM rw WHERE id >= 3000000").Scan(&got, &standby)
				reads.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
				case got < want:
					stale.Add(1)
				case standby:
					onStandby.Add(1)
				}
			}
		})
	}
	waitFor(t, "4000 reads", func() bool { return reads.Load() >= 4000 })
	stop.Store(true)
	wg.Wait()
	t.Logf("1 writer, 8 readers: reads %d, stale %d, errors %d, served by the standby %d (%.0f %%)",
		reads.Load(), stale.Load(), errs.Load(), onStandby.Load(), 100*float64(onStandby.Load())/float64(reads.Load()))
	if stale.Load() > 0 || errs.Load() > 0 {
		t.Errorf("stale reads %d, errors %d, want 0", stale.Load(), errs.Load())
	}
}

func testReplicaStopped(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	r := startReaders(c, 8, nil)
	waitFor(t, "reads", func() bool { return r.reads.Load() > 200 })
	if err := pair.Standby.StopServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster to notice", func() bool { return !c.Stats().Members[1].Healthy })
	before := r.reads.Load()
	waitFor(t, "reads without the standby", func() bool { return r.reads.Load() > before+500 })
	if err := pair.Standby.StartServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	served := c.Stats().Members[1].Reads
	waitFor(t, "the standby to serve reads again", func() bool { return c.Stats().Members[1].Reads > served+100 })
	r.finish(t, "standby stopped and started")
}

func testReplicaKilled(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	r := startReaders(c, 8, nil)
	for range 5 {
		before := c.Stats().Members[1].Reads
		waitFor(t, "the standby to serve reads", func() bool { return c.Stats().Members[1].Reads > before+50 })
		if _, err := pair.Standby.TerminateBackends(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	r.finish(t, "standby backends killed 5 times")
}

func testReplicaHung(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	r := startReaders(c, 8, nil)
	before := c.Stats().Members[1].Reads
	waitFor(t, "the standby to serve reads", func() bool { return c.Stats().Members[1].Reads > before+100 })
	if err := pair.Standby.Pause(t.Context()); err != nil {
		t.Fatal(err)
	}
	unpaused := false
	t.Cleanup(func() {
		if !unpaused {
			pair.Standby.Unpause(context.Background())
		}
	})
	waitFor(t, "the cluster to notice", func() bool { return !c.Stats().Members[1].Healthy })
	n := r.reads.Load()
	waitFor(t, "reads without the standby", func() bool { return r.reads.Load() > n+500 })
	if err := pair.Standby.Unpause(t.Context()); err != nil {
		t.Fatal(err)
	}
	unpaused = true
	served := c.Stats().Members[1].Reads
	waitFor(t, "the standby to serve reads again", func() bool { return c.Stats().Members[1].Reads > served+100 })
	r.finish(t, "standby hung and back")
}

func testReplayPaused(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	r := startReaders(c, 8, nil)
	admin(t, pair.Standby, "SELECT pg_wal_replay_pause()")
	t.Cleanup(func() { admin(t, pair.Standby, "SELECT pg_wal_replay_resume()") })
	// Write past the lag bound.
	for i := range 40 {
		if _, err := c.Exec(t.Context(), "INSERT INTO rw (id, pad) SELECT 4000000 + $1 * 1000 + g, repeat('y', 100) FROM generate_series(0, 99) g", i); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the standby to be past the bound", func() bool {
		m := c.Stats().Members[1]
		return m.LagBytes > lagBound && !m.Readable
	})
	served := c.Stats().Members[1].Reads
	before := r.reads.Load()
	waitFor(t, "reads", func() bool { return r.reads.Load() > before+1000 })
	m := c.Stats().Members[1]
	t.Logf("replay paused: standby lag %d bytes (%v), reads served by it while past the bound: %d", m.LagBytes, m.LagTime, m.Reads-served)
	// A read that was already running on the standby when the check found the lag may finish
	// there: at most one per reader.
	if n := m.Reads - served; n > 8 {
		t.Errorf("the standby served %d reads while past the lag bound", n)
	}
	admin(t, pair.Standby, "SELECT pg_wal_replay_resume()")
	waitFor(t, "the standby to catch up", func() bool { return c.Stats().Members[1].Readable })
	r.finish(t, "replay paused")
}

func testPromoted(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	r := startReaders(c, 8, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var writes, writeErrs atomic.Int64
	var firstErr atomic.Pointer[error]
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			err := c.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
				_, err := tx.Exec(t.Context(), "INSERT INTO rw (id) VALUES ($1)", 5_000_000+i)
				return err
			})
			writes.Add(1)
			if err != nil {
				writeErrs.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	waitFor(t, "writes", func() bool { return writes.Load() > 50 })
	if err := pair.Failover(t.Context(), pgharness.OldPrimaryReadOnly); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the cluster to follow the promotion", func() bool { return c.Stats().Members[1].Role == pool.RolePrimary })
	after := writes.Load() - writeErrs.Load()
	waitFor(t, "writes on the new primary", func() bool { return writes.Load()-writeErrs.Load() > after+50 })
	stop.Store(true)
	wg.Wait()
	r.finish(t, "standby promoted")
	var e error
	if p := firstErr.Load(); p != nil {
		e = *p
	}
	t.Logf("writes %d, failed %d (first: %v); roles: %s, %s", writes.Load(), writeErrs.Load(), e,
		c.Stats().Members[0].Role, c.Stats().Members[1].Role)
	var standby bool
	if err := c.QueryRow(t.Context(), "SELECT pg_is_in_recovery()").Scan(&standby); err != nil || standby {
		t.Fatalf("the cluster's primary: in recovery %v, err %v", standby, err)
	}
}

// testDemotedRejoins makes the former primary (read-only since testPromoted) a standby of the
// new one: the cluster finds it in recovery and sends it reads, with no read failing meanwhile.
func testDemotedRejoins(t *testing.T, pair *pgharness.Pair, c *pool.Cluster) {
	if s := c.Stats().Members[0]; s.Role != pool.RoleDetached || s.Readable {
		t.Fatalf("the former primary before: role %s, readable %v; want detached, not readable", s.Role, s.Readable)
	}
	r := startReaders(c, 8, nil)
	if err := pair.Rejoin(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the former primary to take reads", func() bool {
		s := c.Stats().Members[0]
		return s.Role == pool.RoleReplica && s.Readable
	})
	served := c.Stats().Members[0].Reads
	waitFor(t, "the former primary to serve reads", func() bool { return c.Stats().Members[0].Reads > served+100 })
	r.finish(t, "demoted primary rejoined as a standby")
}

func logStats(t *testing.T, c *pool.Cluster) {
	s := c.Stats()
	t.Logf("cluster: checks %d (asked by reads %d), promotions %d, writes followed %d, replica fallbacks %d, primary reads (no replica %d, for writes %d), writes tracked %d untracked %d",
		s.Checks, s.ChecksAskedByReads, s.Promotions, s.WritesFollowed, s.ReplicaFallbacks, s.PrimaryReadsNoReplica, s.PrimaryReadsForWrites, s.WritesTracked, s.WritesUntracked)
	for _, m := range s.Members {
		t.Logf("member %s: %s, reads %d, read failures %d, check failures %d (busy %d), lag %d bytes, mean check %v",
			m.Addr, m.Role, m.Reads, m.ReadFailures, m.CheckFailures, m.ChecksBusy, m.LagBytes, (m.CheckTime / time.Duration(max(1, s.Checks))).Round(time.Microsecond))
	}
}
