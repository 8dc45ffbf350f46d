package cluster_test

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// sleepySQL answers three rows, the first of them one second late on a standby: a replica that
// dies in that second fails the statement before any row reached the caller.
const sleepySQL = `WITH s AS MATERIALIZED (SELECT pg_sleep(CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END))
	SELECT g FROM s, generate_series(1, 3) g`

// testReplicasDieMidStatement starts reads through Reader.Query and Reader.SendBatch, waits
// until each standby is running some, then kills the first standby's backends and stops the
// second: every read moves to another member and answers in full, none fails.
func testReplicasDieMidStatement(t *testing.T, pair *pgharness.Pair, c *pool.Cluster, standby2 *pgharness.Server) {
	ctx := t.Context()
	reads := map[string]func() ([]int, error){
		"Query": func() ([]int, error) {
			rows, err := c.Replica().Query(ctx, sleepySQL)
			if err != nil {
				return nil, err
			}
			return pgx.CollectRows(rows, pgx.RowTo[int])
		},
		"SendBatch": func() ([]int, error) {
			b := &pgx.Batch{}
			b.Queue(sleepySQL)
			b.Queue("SELECT 1")
			br := c.Replica().SendBatch(ctx, b)
			rows, err := br.Query()
			if err != nil {
				br.Close()
				return nil, err
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				br.Close()
				return nil, err
			}
			return got, br.Close()
		},
	}
	before := c.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		name := []string{"Query", "SendBatch"}[i%2]
		wg.Go(func() {
			got, err := reads[name]()
			if err == nil && len(got) != 3 {
				t.Errorf("%s: rows %v, want 1, 2, 3", name, got)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	waitFor(t, "reads running on both standbys", func() bool {
		return sleeping(t, pair.Standby) > 0 && sleeping(t, standby2) > 0
	})
	if _, err := pair.Standby.TerminateBackends(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby2.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a read failed: %v", err)
	}
	after := c.Stats()
	t.Logf("8 reads (4 Query, 4 SendBatch) on standbys killed mid-statement: %d moved to another member", after.ReplicaFallbacks-before.ReplicaFallbacks)
	if moved := after.ReplicaFallbacks - before.ReplicaFallbacks; moved < 8 {
		t.Errorf("%d reads moved to another member, want every one of the 8", moved)
	}
	for _, m := range after.Members {
		if m.InFlight != 0 {
			t.Errorf("member %s: %d reads still counted in flight", m.Addr, m.InFlight)
		}
	}
	if err := standby2.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standbys to take reads again", func() bool { s := c.Stats(); return s.Members[1].Readable && s.Members[2].Readable })
}

// sleeping counts the backends of s running sleepySQL.
func sleeping(t *testing.T, s *pgharness.Server) int {
	t.Helper()
	var n int
	admin(t, s, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'", &n)
	return n
}
