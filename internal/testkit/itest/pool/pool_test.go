package pool_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

func TestRunsStatementsLikePgxpool(t *testing.T) {
	t.Parallel()
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	ctx := context.Background()

	t.Run("Exec", func(t *testing.T) {
		tag, err := p.Exec(ctx, "UPDATE kv SET v = v WHERE k <= $1", 3)
		if err != nil || tag.RowsAffected() != 3 {
			t.Fatalf("tag=%v err=%v", tag, err)
		}
	})
	t.Run("QueryRow", func(t *testing.T) {
		var v string
		if err := p.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", 42).Scan(&v); err != nil || v != "value 42" {
			t.Fatalf("v=%q err=%v", v, err)
		}
		err := p.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", -1).Scan(&v)
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatalf("want ErrNoRows, got %v", err)
		}
	})
	t.Run("Query reads every row", func(t *testing.T) {
		rows, err := p.Query(ctx, "SELECT k FROM kv WHERE k <= 10 ORDER BY k")
		if err != nil {
			t.Fatal(err)
		}
		ks, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil || len(ks) != 10 || ks[0] != 1 || ks[9] != 10 {
			t.Fatalf("ks=%v err=%v", ks, err)
		}
	})
	t.Run("Query with no rows", func(t *testing.T) {
		rows, err := p.Query(ctx, "SELECT k FROM kv WHERE k < 0")
		if err != nil {
			t.Fatal(err)
		}
		if rows.Next() {
			t.Fatal("a row from an empty result")
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Query error", func(t *testing.T) {
		_, err := p.Query(ctx, "SELECT nope FROM kv")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42703" {
			t.Fatalf("want undefined_column, got %v", err)
		}
	})
	t.Run("SendBatch", func(t *testing.T) {
		b := &pgx.Batch{}
		b.Queue("SELECT v FROM kv WHERE k = $1", 1)
		b.Queue("SELECT count(*) FROM kv")
		br := p.SendBatch(ctx, b)
		var v string
		var n int
		if err := br.QueryRow().Scan(&v); err != nil || v != "value 1" {
			t.Fatalf("v=%q err=%v", v, err)
		}
		if err := br.QueryRow().Scan(&n); err != nil || n != 100 {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("CopyFrom", func(t *testing.T) {
		n, err := p.CopyFrom(ctx, pgx.Identifier{"writes"}, []string{"key"},
			pgx.CopyFromRows([][]any{{"copy-1"}, {"copy-2"}}))
		if err != nil || n != 2 {
			t.Fatalf("n=%d err=%v", n, err)
		}
	})
	t.Run("Begin and Commit", func(t *testing.T) {
		tx, err := p.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ('begin')"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
			t.Fatalf("rollback after commit: %v", err)
		}
	})
	t.Run("Tx rolls back on error", func(t *testing.T) {
		boom := errors.New("boom")
		err := p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ('rolled back')"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("want boom, got %v", err)
		}
		var n int
		p.QueryRow(ctx, "SELECT count(*) FROM writes WHERE key = 'rolled back'").Scan(&n)
		if n != 0 {
			t.Fatalf("%d rows of a rolled back transaction", n)
		}
	})
	t.Run("StdDB", func(t *testing.T) {
		db := p.StdDB()
		defer db.Close() // database/sql keeps its idle connections checked out of the pool
		var v string
		if err := db.QueryRowContext(ctx, "SELECT v FROM kv WHERE k = $1", 7).Scan(&v); err != nil || v != "value 7" {
			t.Fatalf("v=%q err=%v", v, err)
		}
	})
	// pgxpool returns connections asynchronously when an AfterRelease hook is set.
	waitFor(t, func() bool { return p.Stats().AcquiredConns == 0 })
}

func TestTxRetriesSerializationFailures(t *testing.T) {
	t.Parallel()
	dsn := freshDB(t)
	p := newPool(t, dsn, nil)
	ctx := context.Background()
	if _, err := p.Exec(ctx, "CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)"); err != nil {
		t.Fatal(err)
	}
	// Many concurrent read-modify-write transactions at SERIALIZABLE: most conflict; every one
	// must end up applied exactly once.
	const workers, each = 8, 10
	errs := make(chan error, workers*each)
	start := make(chan struct{})
	var done = make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				<-start
				for range each {
					errs <- p.Tx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
						var n int
						if err := tx.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, "UPDATE counter SET n = $1", n+1)
						return err
					})
				}
			})
		}
		close(start)
		wg.Wait()
	}()
	<-done
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := p.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil || n != workers*each {
		t.Fatalf("counter = %d (err %v), want %d", n, err, workers*each)
	}
	if r := p.Stats().Retries.Conflict; r == 0 {
		t.Fatal("no conflict was retried: the test did not exercise the retry")
	} else {
		t.Logf("%d conflicts retried", r)
	}
}

func TestStatsAndDebugHandler(t *testing.T) {
	t.Parallel()
	p := newPool(t, freshDB(t), func(c *config.Config) { c.Size, c.Overflow = 3, 2 })
	rec := httptest.NewRecorder()
	p.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pool", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"size", "checked_in", "checked_out", "overflow", "acquires", "acquire_timeouts",
		"retries", "failed_pings", "opened", "recycled", "destroyed"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %q in %s", k, rec.Body.String())
		}
	}
	if got["size"] != float64(3) || got["max"] != float64(5) {
		t.Errorf("size/max = %v/%v, want 3/5", got["size"], got["max"])
	}
}

func TestNewFailsFastOnPermanentErrors(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	cfg, err := config.Parse(strings.Replace(s.DSN(), s.Password(), "wrong-password", 1))
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.New(context.Background(), cfg)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("want invalid_password, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Fatal("the error shows the password")
	}
}

func TestCloseIsIdempotentAndLeavesNoGoroutines(t *testing.T) {
	dsn := freshDB(t)
	before := runtime.NumGoroutine()
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.WarmUp = true
	p, err := pool.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := startLoad(p, 8, 2, 0)
	time.Sleep(200 * time.Millisecond)
	l.finish(t)
	p.Close()
	p.Close()
	if _, err := p.Exec(context.Background(), "SELECT 1"); !errors.Is(err, pool.ErrClosed) {
		t.Fatalf("Exec after Close: %v", err)
	}
	// pgxpool ends its health-check goroutine asynchronously after Close; give it a moment.
	var after int
	for range 50 {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

func TestIdempotentDoRerunsAReadCutMidStream(t *testing.T) {
	t.Parallel()
	p := newPool(t, freshDB(t), nil)
	ctx := context.Background()
	attempts := 0
	var ks []int
	err := p.Idempotent().Do(ctx, func(ctx context.Context) error {
		attempts++
		ks = ks[:0]
		// The first attempt's backend kills itself after the first rows have been read.
		rows, err := p.Idempotent().Query(ctx,
			`SELECT k, CASE WHEN k = 50 AND $1 THEN pg_terminate_backend(pg_backend_pid()) END FROM kv ORDER BY k`,
			attempts == 1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k int
			var killed *bool
			if err := rows.Scan(&k, &killed); err != nil {
				return err
			}
			ks = append(ks, k)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if attempts != 2 || len(ks) != 100 {
		t.Fatalf("attempts=%d rows=%d, want 2 attempts and 100 rows", attempts, len(ks))
	}
}

// pgx may leave a background read pending on an idle connection (its reader for slow writes
// stops only after a read returns). The pool's peek at the socket must not wait for that read's
// lock: the caller's deadline must still bound the call.
func TestPeekDoesNotWaitForAPendingRead(t *testing.T) {
	t.Parallel()
	p := newPool(t, freshDB(t), func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	ctx := context.Background()
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw := c.Conn().PgConn().Conn()
	reading := make(chan struct{})
	go func() {
		close(reading)
		raw.Read(make([]byte, 1)) // parked until the connection closes or the server speaks
	}()
	<-reading
	c.Release()

	done := make(chan error, 1)
	go func() {
		short, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var v string
		done <- p.QueryRow(short, "SELECT v FROM kv WHERE k = 1").Scan(&v)
	}()
	select {
	case err := <-done:
		t.Logf("returned with %v", err) // the parked read may steal the answer: an error is fine
	case <-time.After(time.Minute):
		t.Fatal("QueryRow ignored its deadline: the peek is waiting for the pending read")
	}
}

// A statement whose backend kills itself, before any row, on the first attempt only: nextval
// is not rolled back, so it dies with 57P01 (ConnLost) once and returns one row when it runs
// again. (pg_sleep lets the termination land before the first row is sent.)
const killFirstAttempt = `SELECT n FROM (SELECT nextval('attempts') AS n) s
	WHERE n > 1 OR (pg_terminate_backend(pg_backend_pid()) AND (SELECT true FROM pg_sleep(5)))`

func TestIdempotentRetriesAStatementCutBeforeItsFirstResult(t *testing.T) {
	t.Parallel()
	p := newPool(t, freshDB(t), nil)
	ctx := context.Background()
	reset := func(t *testing.T) {
		t.Helper()
		if _, err := p.Exec(ctx, "DROP SEQUENCE IF EXISTS attempts; CREATE SEQUENCE attempts"); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("Query", func(t *testing.T) {
		reset(t)
		rows, err := p.Idempotent().Query(ctx, killFirstAttempt)
		if err != nil {
			t.Fatal(err)
		}
		ns, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(ns) != 1 || ns[0] != 2 {
			t.Fatalf("rows %v (err %v), want the second attempt's row [2]", ns, err)
		}
	})
	t.Run("SendBatch", func(t *testing.T) {
		reset(t)
		b := &pgx.Batch{}
		b.Queue(killFirstAttempt)
		b.Queue("SELECT count(*) FROM kv")
		br := p.Idempotent().SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := br.QueryRow().Scan(&n); err != nil || n != 100 {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not retried by default", func(t *testing.T) {
		reset(t)
		_, err := p.Exec(ctx, killFirstAttempt)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
			t.Fatalf("want the 57P01 of a lost connection, got %v", err)
		}
	})
	var seq int
	if err := p.QueryRow(ctx, "SELECT last_value FROM attempts").Scan(&seq); err != nil || seq != 1 {
		t.Fatalf("the default Exec ran %d times, want 1 (err %v)", seq, err)
	}
	if r := p.Stats().Retries; r.ConnLost != 2 {
		t.Fatalf("retries %v, want 2 ConnLost (Query and SendBatch)", r)
	}
}
