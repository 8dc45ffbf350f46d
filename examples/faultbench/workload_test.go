package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/pool"
)

func TestErrorKindsGroupsVolatileParts(t *testing.T) {
	ek := errorKinds{}
	ek.add("read", errors.New(`ERROR: prepared statement "stmtcache_b3b5317403f7c70d" already exists (SQLSTATE 42P05)`))
	ek.add("read", errors.New(`ERROR: prepared statement "stmtcache_9959fa8917240398" already exists (SQLSTATE 42P05)`))
	ek.add("read", errors.New("dial tcp 127.0.0.1:32795: connect: connection refused"))
	ek.add("read", errors.New("dial tcp 127.0.0.1:32801: connect: connection refused"))
	ek.add("write", errors.New("dial tcp 127.0.0.1:32801: connect: connection refused"))
	kinds := sortedKinds(ek)
	if len(kinds) != 3 {
		t.Fatalf("got %d kinds, want 3: %+v", len(kinds), kinds)
	}
	if kinds[0].count != 2 || kinds[1].count != 2 || kinds[2].count != 1 || kinds[2].op != "write" {
		t.Errorf("kinds = %+v", kinds)
	}
}

func TestTallyClassifiesWrites(t *testing.T) {
	tl := &tally{errs: errorKinds{}}
	now := time.Now()
	tl.write(now, time.Millisecond, "a", nil)
	tl.write(now, time.Millisecond, "b", fmt.Errorf("wrapped: %w", &pool.AmbiguousCommitError{Err: errors.New("EOF")}))
	tl.write(now, time.Millisecond, "c", errors.New("boom"))
	tl.read(now, time.Millisecond, "value 1", nil)
	tl.read(now, time.Millisecond, "", errors.New("boom"))
	want := []writeOutcome{{"a", writeAcked}, {"b", writeAmbiguous}, {"c", writeFailed}}
	if fmt.Sprint(tl.writes) != fmt.Sprint(want) {
		t.Errorf("writes = %v, want %v", tl.writes, want)
	}
	if tl.readsOK != 1 || tl.readErrs != 1 || len(tl.latencies) != 5 {
		t.Errorf("reads ok=%d errs=%d latencies=%d, want 1, 1, 5", tl.readsOK, tl.readErrs, len(tl.latencies))
	}
}

func TestTallyMeasuresAFailover(t *testing.T) {
	clock := &switchClock{oldServer: "172.17.0.2/32"}
	tl := &tally{errs: errorKinds{}, clock: clock}
	t0 := time.Now()
	readOnly := fmt.Errorf("insert: %w", &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"})

	// Before the switch: reads from the old primary are not stale, writes are not "first".
	tl.read(t0, time.Millisecond, "172.17.0.2/32", nil)
	tl.write(t0, time.Millisecond, "w0", nil)
	tl.write(t0, time.Millisecond, "w1", readOnly)

	clock.promoted.Store(t0.Add(time.Second).UnixNano())
	clock.moved.Store(t0.Add(time.Second + time.Millisecond).UnixNano())

	tl.read(t0.Add(2*time.Second), time.Millisecond, "172.17.0.2/32", nil) // stale
	tl.read(t0.Add(2*time.Second), time.Millisecond, "172.17.0.3/32", nil)
	tl.read(t0.Add(2*time.Second), time.Millisecond, "", errors.New("boom")) // an error, not a read after the switch
	tl.write(t0.Add(1500*time.Millisecond), 100*time.Millisecond, "w2", readOnly)
	tl.write(t0.Add(1800*time.Millisecond), 200*time.Millisecond, "w3", nil) // ends 1 s after the promotion
	tl.write(t0.Add(1200*time.Millisecond), 600*time.Millisecond, "w4", nil) // ends 0.8 s after: the first
	tl.write(t0.Add(3*time.Second), time.Millisecond, "w5", nil)

	r := summarize("failover", "pgxpool", tl, map[string]int{"w0": 1, "w3": 1, "w4": 1, "w5": 1})
	if !r.failover || r.readsAfterMove != 2 || r.staleReads != 1 || r.readOnly != 2 || r.firstWrite != 800*time.Millisecond {
		t.Errorf("failover = %v, reads after the move %d, stale %d, 25006 %d, first write %v; want true, 2, 1, 2, 800ms",
			r.failover, r.readsAfterMove, r.staleReads, r.readOnly, r.firstWrite)
	}
	if r.writeErrs != 2 || r.lost != 0 {
		t.Errorf("write errors %d, lost %d; want 2, 0", r.writeErrs, r.lost)
	}
}
