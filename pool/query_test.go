package pool_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// failFirst answers the first n statements containing part with fail, and the later ones
// with ok.
func failFirst(n int, part string, fail, ok pgfake.Reply) pgfake.Handler {
	var seen atomic.Int32
	return func(q pgfake.Query) pgfake.Reply {
		if !sqlHas(part)(q) {
			return pgfake.Reply{}
		}
		if int(seen.Add(1)) <= n {
			return fail
		}
		return ok
	}
}

var oneRow = pgfake.Rows([]string{"v"}, []any{"x"})

// querier is what *pool.Pool and pool.Querier have in common for one statement.
type querier interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}

// statementCalls run a statement that returns one text column each way a caller can, reading
// its rows.
var statementCalls = []struct {
	name string
	run  func(ctx context.Context, q querier, sql string) error
}{
	{"Exec", func(ctx context.Context, q querier, sql string) error {
		_, err := q.Exec(ctx, sql)
		return err
	}},
	{"Query", func(ctx context.Context, q querier, sql string) error {
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return err
		}
		_, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	}},
	{"QueryRow", func(ctx context.Context, q querier, sql string) error {
		var v string
		return q.QueryRow(ctx, sql).Scan(&v)
	}},
	{"SendBatch", func(ctx context.Context, q querier, sql string) error {
		b := &pgx.Batch{}
		b.Queue(sql)
		br := q.SendBatch(ctx, b)
		var v string
		err := br.QueryRow().Scan(&v)
		return errors.Join(err, br.Close())
	}},
}

func TestAStatementIsRunAgainOnlyWhenItCannotHaveRunTwice(t *testing.T) {
	tests := []struct {
		name       string
		idempotent bool // through p.Idempotent()
		first      pgfake.Reply
		wantClass  retry.Class // of the error the caller gets; -1: none
		wantSent   int
		wantRetry  pool.RetryCounts
	}{
		{"connection lost in flight: may have run, not retried", false, pgfake.Drop(), retry.ConnLost, 1, pool.RetryCounts{}},
		{"connection lost in flight, idempotent: retried", true, pgfake.Drop(), -1, 2, pool.RetryCounts{ConnLost: 1}},
		{"backend terminated in flight: not retried", false, pgfake.Fatal("57P01", "terminating connection due to administrator command"), retry.ConnLost, 1, pool.RetryCounts{}},
		{"serialization failure: rolled back, retried", false, pgfake.Fail("40001", "could not serialize access"), -1, 2, pool.RetryCounts{Conflict: 1}},
		{"deadlock: rolled back, retried", false, pgfake.Fail("40P01", "deadlock detected"), -1, 2, pool.RetryCounts{Conflict: 1}},
		{"undefined table: the caller's error, not retried", true, pgfake.Fail("42P01", `relation "x" does not exist`), retry.Permanent, 1, pool.RetryCounts{}},
	}
	for _, call := range statementCalls {
		for _, tt := range tests {
			t.Run(call.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					s := fakeServer(t, failFirst(1, "SELECT 'x'", tt.first, oneRow))
					p := fakePool(t, s, nil)
					var q querier = p
					if tt.idempotent {
						q = p.Idempotent()
					}
					err := call.run(t.Context(), q, "SELECT 'x'")
					switch {
					case tt.wantClass < 0 && err != nil:
						t.Fatalf("err = %v, want none", err)
					case tt.wantClass >= 0 && retry.Classify(err) != tt.wantClass:
						t.Fatalf("err = %v of class %v, want %v", err, retry.Classify(err), tt.wantClass)
					}
					if got := count(s, "SELECT 'x'"); got != tt.wantSent {
						t.Errorf("sent %d times, want %d", got, tt.wantSent)
					}
					synctest.Wait() // pgxpool destroys a broken connection in the background
					if got := p.Stats().Retries; got != tt.wantRetry {
						t.Errorf("Stats.Retries = %+v, want %+v", got, tt.wantRetry)
					}
					if got := p.Stats().AcquiredConns; got != 0 {
						t.Errorf("%d connections still held after the call", got)
					}
				})
			})
		}
	}
}

func TestAConflictInACallThatMayCommitInsideIsNotRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, failFirst(1, "CALL", pgfake.Fail("40001", "could not serialize access"), pgfake.Tag("CALL")))
		p := fakePool(t, s, nil)
		_, err := p.Exec(t.Context(), "CALL move_money()")
		if retry.Classify(err) != retry.Conflict {
			t.Fatalf("err = %v, want the conflict: the procedure may have committed part of its work", err)
		}
		if got := count(s, "CALL"); got != 1 {
			t.Fatalf("sent %d times, want 1", got)
		}
	})
}

func TestDoRunsAWholeReadAgainAfterTheConnectionWasLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, failFirst(1, "SELECT 'x'", pgfake.Drop(), oneRow))
		p := fakePool(t, s, nil)
		runs := 0
		err := p.Idempotent().Do(t.Context(), func(ctx context.Context) error {
			runs++
			rows, err := p.Query(ctx, "SELECT 'x'")
			if err != nil {
				return err
			}
			_, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil || runs != 2 {
			t.Fatalf("Do: err %v after %d runs, want nil after 2", err, runs)
		}
	})
}

func TestABatchIsSentAgainOnlyUntilItsFirstResultIsRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conflict := failFirst(1, "SELECT 'x'", pgfake.Fail("40001", "could not serialize access"), oneRow)
		s := fakeServer(t, func(q pgfake.Query) pgfake.Reply {
			if q.SQL == "SELECT 'y'" {
				return oneRow
			}
			return conflict(q)
		})
		p := fakePool(t, s, nil)
		b := &pgx.Batch{}
		b.Queue("SELECT 'y'")
		b.Queue("SELECT 'x'")
		br := p.SendBatch(t.Context(), b)
		_, err1 := br.Exec()
		_, err2 := br.Exec()
		br.Close()
		if err1 != nil || retry.Classify(err2) != retry.Conflict {
			t.Fatalf("results: %v, %v; want nil, then the conflict: the first result was handed over", err1, err2)
		}
		if got := count(s, "SELECT 'x'"); got != 1 {
			t.Fatalf("sent %d times, want 1", got)
		}
	})
}
