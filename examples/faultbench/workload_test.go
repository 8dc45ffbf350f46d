package main

import (
	"errors"
	"fmt"
	"testing"
	"time"

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
	tl.write(time.Millisecond, "a", nil)
	tl.write(time.Millisecond, "b", fmt.Errorf("wrapped: %w", &pool.AmbiguousCommitError{Err: errors.New("EOF")}))
	tl.write(time.Millisecond, "c", errors.New("boom"))
	tl.read(time.Millisecond, nil)
	tl.read(time.Millisecond, errors.New("boom"))
	want := []writeOutcome{{"a", writeAcked}, {"b", writeAmbiguous}, {"c", writeFailed}}
	if fmt.Sprint(tl.writes) != fmt.Sprint(want) {
		t.Errorf("writes = %v, want %v", tl.writes, want)
	}
	if tl.readsOK != 1 || tl.readErrs != 1 || len(tl.latencies) != 5 {
		t.Errorf("reads ok=%d errs=%d latencies=%d, want 1, 1, 5", tl.readsOK, tl.readErrs, len(tl.latencies))
	}
}
