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
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{PgBouncer: true}) }

// newPool builds a pool on a fresh database reached through dsn's host (the server, PgBouncer
// or a fault proxy), after letting edit change the parsed config, with opts.
func newPool(t testing.TB, dsn string, edit func(*config.Config), opts ...pool.Option) *pool.Pool {
	t.Helper()
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := pool.New(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// freshDB returns a DSN for a new database holding table kv(k int primary key, v text) with
// rows 1..100, and table writes(key text, at timestamptz) with no unique constraint, so that a
// duplicated write would show.
func freshDB(t testing.TB) string {
	t.Helper()
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := newPool(t, dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	_, err = p.Exec(ctx, `CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL);
		INSERT INTO kv SELECT i, 'value ' || i FROM generate_series(1, 100) i;
		CREATE TABLE writes (key text NOT NULL, at timestamptz NOT NULL DEFAULT now());
		CREATE INDEX ON writes (key)`)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	return dsn
}

// load is a workload of readers (and optionally writers) that runs until stopped and counts
// what its callers saw.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []error
	maxWait    time.Duration
	acked      []string // write keys whose Tx returned nil
	ambiguous  []string // write keys whose Tx returned an AmbiguousCommitError
	stop       chan struct{}
	wg         sync.WaitGroup
}

func (l *load) record(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxWait = max(l.maxWait, d)
	if err == nil {
		l.ok.Add(1)
		return
	}
	l.failed.Add(1)
	if len(l.errs) < 5 {
		l.errs = append(l.errs, err)
	}
}

// loads numbers the loads, so that two loads on one database write different keys.
var loads atomic.Int64

// startLoad runs readers goroutines of indexed single-row reads through p.Idempotent(), and
// writers goroutines inserting rows with unique keys through p.Tx, each pausing gap between
// requests.
func startLoad(p *pool.Pool, readers, writers int, gap time.Duration) *load {
	l := &load{stop: make(chan struct{})}
	run := loads.Add(1)
	ctx := context.Background()
	pause := func() bool {
		select {
		case <-l.stop:
			return false
		case <-time.After(gap):
			return true
		}
	}
	for w := range readers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				start := time.Now()
				var v string
				err := p.Idempotent().QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", 1+(w*7+i)%100).Scan(&v)
				l.record(time.Since(start), err)
				if !pause() {
					return
				}
			}
		})
	}
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("load%d-w%d-%d", run, w, i)
				start := time.Now()
				err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", key)
					return err
				})
				var amb *pool.AmbiguousCommitError
				l.mu.Lock()
				switch {
				case err == nil:
					l.acked = append(l.acked, key)
				case errors.As(err, &amb):
					l.ambiguous = append(l.ambiguous, key)
				}
				l.mu.Unlock()
				if !errors.As(err, &amb) {
					l.record(time.Since(start), err)
				}
				if !pause() {
					return
				}
			}
		})
	}
	return l
}

// finish stops the load and fails t if any caller saw an error.
func (l *load) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	t.Logf("requests ok=%d failed=%d, longest %v, writes acknowledged=%d ambiguous=%d",
		l.ok.Load(), l.failed.Load(), l.maxWait.Round(time.Millisecond), len(l.acked), len(l.ambiguous))
	if l.failed.Load() > 0 {
		t.Errorf("%d requests failed; first errors: %v", l.failed.Load(), l.errs)
	}
	if l.ok.Load() == 0 {
		t.Error("no request succeeded")
	}
}

// checkWrites fails t unless every acknowledged write is in the database exactly once, and
// every ambiguous one at most once.
func (l *load) checkWrites(t *testing.T, dsn string) {
	t.Helper()
	p := newPool(t, dsn, nil)
	counts := map[string]int{}
	rows, err := p.Query(context.Background(), "SELECT key, count(*) FROM writes GROUP BY key")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		counts[k] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range l.acked {
		if counts[k] != 1 {
			t.Errorf("acknowledged write %s stored %d times, want 1", k, counts[k])
		}
	}
	for _, k := range l.ambiguous {
		if counts[k] > 1 {
			t.Errorf("ambiguous write %s stored %d times, want at most 1", k, counts[k])
		}
	}
	for k, n := range counts {
		if n > 1 {
			t.Errorf("write %s stored %d times", k, n)
		}
	}
	if len(l.acked) == 0 {
		t.Error("no write was acknowledged")
	}
}
