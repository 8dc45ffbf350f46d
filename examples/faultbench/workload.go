package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/pool"
)

// kvRows is the number of rows the readers choose from.
const kvRows = 1000

// schemaSQL creates the workload's tables. writes has an index on key but no unique
// constraint: a write stored twice stays visible.
const schemaSQL = `CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
INSERT INTO kv SELECT i, 'value ' || i FROM generate_series(1, 1000) i;
ANALYZE kv;
CREATE TABLE writes (key text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE INDEX writes_key ON writes (key)`

// workload is how hard each client is driven.
type workload struct {
	readers, writers int
	pause            time.Duration // after each request of a worker
	burst            time.Duration // when > 0, readers fire together this often instead of pausing
	timeout          time.Duration // deadline of each request
	clock            *switchClock  // the failover fault's, else nil
}

// switchClock is when the failover fault switched primaries; the tallies of every client
// share it. Its methods are safe for concurrent use.
type switchClock struct {
	oldServer string       // what whereSQL answers on the old primary
	promoted  atomic.Int64 // unix ns when the standby accepted writes; 0 before
	moved     atomic.Int64 // unix ns when the stable name pointed at the new primary; 0 before
}

// since returns the time of the event stored in at, and whether it has happened.
func since(at *atomic.Int64) (time.Time, bool) {
	ns := at.Load()
	return time.Unix(0, ns), ns != 0
}

// run drives c with w's workers until stop is closed, and returns what the callers saw once
// every worker has finished its request in flight. Requests are bounded by ctx too. Write
// keys start with prefix, which must differ between two runs on one database.
func (w workload) run(ctx context.Context, c client, prefix string, stop <-chan struct{}) *tally {
	t := &tally{errs: errorKinds{}, clock: w.clock}
	var wg sync.WaitGroup
	// wait pauses between two requests; false means stop.
	wait := func() bool {
		if w.pause == 0 {
			select {
			case <-stop:
				return false
			default:
				return true
			}
		}
		timer := time.NewTimer(w.pause)
		defer timer.Stop()
		select {
		case <-stop:
			return false
		case <-timer.C:
			return true
		}
	}
	if w.burst > 0 {
		wait = burstClock(w.burst, stop)
	}
	for range w.readers {
		wg.Go(func() {
			for {
				rctx, cancel := context.WithTimeout(ctx, w.timeout)
				start := time.Now()
				v, err := c.read(rctx, 1+rand.IntN(kvRows))
				cancel()
				t.read(start, time.Since(start), v, err)
				if !wait() {
					return
				}
			}
		})
	}
	for n := range w.writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("%sw%d-%d", prefix, n, i)
				rctx, cancel := context.WithTimeout(ctx, w.timeout)
				start := time.Now()
				err := c.write(rctx, key)
				cancel()
				t.write(start, time.Since(start), key, err)
				if !wait() {
					return
				}
			}
		})
	}
	wg.Wait()
	return t
}

// burstClock returns a wait that ends at the next tick of a clock ticking every interval until
// stop is closed (false then), the same tick for every caller: workers that wait on it fire
// together, and one whose request outlasted the interval joins the next burst.
func burstClock(interval time.Duration, stop <-chan struct{}) func() bool {
	var next atomic.Pointer[chan struct{}]
	ch := make(chan struct{})
	next.Store(&ch)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			ch := make(chan struct{})
			close(*next.Swap(&ch))
		}
	}()
	return func() bool {
		select {
		case <-stop:
			return false
		case <-*next.Load():
			return true
		}
	}
}

// writeState is what the caller of one write was told.
type writeState int

const (
	writeAcked     writeState = iota // no error
	writeAmbiguous                   // *pool.AmbiguousCommitError: the caller knows it may have happened
	writeFailed                      // any other error: the caller believes it did not happen
)

// writeOutcome is one attempted insert.
type writeOutcome struct {
	key   string
	state writeState
}

// tally counts what one client's callers saw. Its methods are safe for concurrent use.
type tally struct {
	mu        sync.Mutex
	readsOK   int
	readErrs  int
	latencies []time.Duration // every request, failed ones included
	writes    []writeOutcome
	errs      errorKinds

	// With a clock (the failover fault):
	clock          *switchClock
	firstWrite     time.Duration // from the promotion to the end of the first write acknowledged after it; 0: none
	readsAfterMove int           // reads sent after the stable name moved, and answered
	staleReads     int           // ... answered by the old primary
	readOnly       int           // errors with SQLSTATE 25006 (read-only transaction): writes sent to the old primary
}

// read records a read that started at start, took d and answered v or failed with err.
func (t *tally) read(start time.Time, d time.Duration, v string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latencies = append(t.latencies, d)
	if err != nil {
		t.readErrs++
		t.errs.add("read", err)
		return
	}
	t.readsOK++
	if t.clock == nil {
		return
	}
	if moved, ok := since(&t.clock.moved); ok && start.After(moved) {
		t.readsAfterMove++
		if v == t.clock.oldServer {
			t.staleReads++
		}
	}
}

// write records a write of key that started at start, took d and failed with err or not.
func (t *tally) write(start time.Time, d time.Duration, key string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latencies = append(t.latencies, d)
	if t.clock != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "25006" {
			t.readOnly++
		}
		if promoted, ok := since(&t.clock.promoted); ok && err == nil {
			if after := start.Add(d).Sub(promoted); after > 0 && (t.firstWrite == 0 || after < t.firstWrite) {
				t.firstWrite = after
			}
		}
	}
	var amb *pool.AmbiguousCommitError
	switch {
	case err == nil:
		t.writes = append(t.writes, writeOutcome{key, writeAcked})
		return
	case errors.As(err, &amb):
		t.writes = append(t.writes, writeOutcome{key, writeAmbiguous})
		t.errs.add("write (ambiguous)", err)
	default:
		t.writes = append(t.writes, writeOutcome{key, writeFailed})
		t.errs.add("write", err)
	}
}

// errorKind is a group of errors whose texts differ only in numbers and identifiers.
type errorKind struct {
	op      string // "read", "write", "write (ambiguous)"
	count   int
	example string // the first text seen
}

// errorKinds groups errors by operation and normalised text.
type errorKinds map[string]*errorKind

// volatile matches the parts of an error text that differ between otherwise equal errors:
// hexadecimal identifiers (stmtcache_5f3a...) and numbers (ports, pids, durations).
var volatile = regexp.MustCompile(`[0-9a-f]{8,}|[0-9]+(\.[0-9]+)?`)

func (ek errorKinds) add(op string, err error) {
	text := err.Error()
	key := op + "\x00" + volatile.ReplaceAllString(text, "#")
	k := ek[key]
	if k == nil {
		k = &errorKind{op: op, example: text}
		ek[key] = k
	}
	k.count++
}
