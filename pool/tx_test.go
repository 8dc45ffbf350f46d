package pool_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// txServer scripts a server for Tx: each transaction learns id 729 on a server whose crash
// stamp is "s1"; the n-th COMMIT gets commits[n-1] (the default answer past the list), the
// n-th INSERT inserts[n-1] (a tag past the list); the status lookup of a lost COMMIT gets
// status, with stamp ("s1" when empty).
type txServer struct {
	commits []pgfake.Reply
	inserts []pgfake.Reply
	status  any // pg_xact_status's answer: "committed", "aborted", "in progress" or nil
	stamp   string

	nCommit, nInsert atomic.Int32
}

func (ts *txServer) handle(q pgfake.Query) pgfake.Reply {
	switch {
	case strings.Contains(q.SQL, "pg_current_xact_id()"):
		return pgfake.Rows([]string{"xid", "stamp"}, []any{"729", "s1"})
	case strings.Contains(q.SQL, "pg_xact_status"):
		stamp := ts.stamp
		if stamp == "" {
			stamp = "s1"
		}
		return pgfake.Rows([]string{"status", "stamp"}, []any{ts.status, stamp})
	case strings.HasPrefix(q.SQL, "INSERT"):
		if n := int(ts.nInsert.Add(1)); n <= len(ts.inserts) {
			return ts.inserts[n-1]
		}
		return pgfake.Tag("INSERT 0 1")
	case strings.EqualFold(q.SQL, "commit"):
		if n := int(ts.nCommit.Add(1)); n <= len(ts.commits) {
			return ts.commits[n-1]
		}
	}
	return pgfake.Reply{}
}

// insert is a transaction function that inserts a row and counts its runs.
func insert(ctx context.Context, runs *int) func(pgx.Tx) error {
	return func(tx pgx.Tx) error {
		*runs++
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES ($1)", 1)
		return err
	}
}

func TestALostCommitIsResolvedBeforeAnythingIsRetriedOrReported(t *testing.T) {
	tests := []struct {
		name          string
		status        any
		stamp         string
		readOnly      bool
		noResolve     bool
		wantAmbiguous bool
		wantXid       uint64
		wantRuns      int
		wantStats     pool.Stats // the commit counters only
	}{
		{name: "the server says committed: done", status: "committed",
			wantRuns: 1, wantStats: pool.Stats{ResolvedCommitted: 1}},
		{name: "the server says rolled back: fn runs again", status: "aborted",
			wantRuns: 2, wantStats: pool.Stats{ResolvedAborted: 1}},
		{name: "still in progress when the budget ends: ambiguous", status: "in progress",
			wantAmbiguous: true, wantXid: 729, wantRuns: 1, wantStats: pool.Stats{AmbiguousCommits: 1}},
		{name: "too old to be known (NULL): ambiguous", status: nil,
			wantAmbiguous: true, wantXid: 729, wantRuns: 1, wantStats: pool.Stats{AmbiguousCommits: 1}},
		{name: "the server crashed since: its committed is not believed", status: "committed", stamp: "s2",
			wantAmbiguous: true, wantXid: 729, wantRuns: 1, wantStats: pool.Stats{AmbiguousCommits: 1}},
		{name: "a read-only transaction learns no id: ambiguous at once", readOnly: true, status: "committed",
			wantAmbiguous: true, wantRuns: 1, wantStats: pool.Stats{AmbiguousCommits: 1}},
		{name: "WithoutCommitResolution: ambiguous at once", noResolve: true, status: "committed",
			wantAmbiguous: true, wantRuns: 1, wantStats: pool.Stats{AmbiguousCommits: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ts := &txServer{commits: []pgfake.Reply{pgfake.Drop()}, status: tt.status, stamp: tt.stamp}
				s := fakeServer(t, ts.handle)
				var opts []pool.Option
				if tt.noResolve {
					opts = append(opts, pool.WithoutCommitResolution())
				}
				p := fakePool(t, s, nil, opts...)
				txOpts := pgx.TxOptions{}
				if tt.readOnly {
					txOpts.AccessMode = pgx.ReadOnly
				}
				runs := 0
				err := p.Tx(t.Context(), txOpts, insert(t.Context(), &runs))
				var amb *pool.AmbiguousCommitError
				if errors.As(err, &amb) != tt.wantAmbiguous || !tt.wantAmbiguous && err != nil {
					t.Fatalf("Tx: %v, want ambiguous %v", err, tt.wantAmbiguous)
				}
				if tt.wantAmbiguous && (amb.Xid != tt.wantXid || retry.Classify(err) != retry.Permanent || !retry.MayRetryLater(err)) {
					t.Errorf("AmbiguousCommitError: Xid %d, class %v; want Xid %d, permanent, may retry later", amb.Xid, retry.Classify(err), tt.wantXid)
				}
				if runs != tt.wantRuns {
					t.Errorf("fn ran %d times, want %d", runs, tt.wantRuns)
				}
				st := p.Stats()
				got := pool.Stats{AmbiguousCommits: st.AmbiguousCommits, ResolvedCommitted: st.ResolvedCommitted, ResolvedAborted: st.ResolvedAborted}
				if got != tt.wantStats {
					t.Errorf("commit counters %+v, want %+v", got, tt.wantStats)
				}
				if learned := count(s, "pg_current_xact_id()") > 0; learned != (!tt.readOnly && !tt.noResolve) {
					t.Errorf("learned the transaction id: %v", learned)
				}
			})
		})
	}
}

func TestATransactionIsRunAgainOnlyWhenItProvablyDidNotCommit(t *testing.T) {
	serialization := pgfake.Fail("40001", "could not serialize access")
	tests := []struct {
		name      string
		inserts   []pgfake.Reply
		commits   []pgfake.Reply
		wantRuns  int
		wantClass retry.Class // of Tx's error; -1: none
	}{
		{"a serialization failure inside: run again", []pgfake.Reply{serialization}, nil, 2, -1},
		{"a deadlock inside: run again", []pgfake.Reply{pgfake.Fail("40P01", "deadlock detected")}, nil, 2, -1},
		{"the connection lost before COMMIT: run again", []pgfake.Reply{pgfake.Drop()}, nil, 2, -1},
		{"a serialization failure at COMMIT: run again", nil, []pgfake.Reply{serialization}, 2, -1},
		{"a deferred constraint at COMMIT: the caller's error", nil, []pgfake.Reply{pgfake.Fail("23505", "duplicate key value")}, 1, retry.Permanent},
		{"fn's own statement error: returned, not retried", []pgfake.Reply{pgfake.Fail("23502", "null value")}, nil, 1, retry.Permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ts := &txServer{inserts: tt.inserts, commits: tt.commits}
				s := fakeServer(t, ts.handle)
				p := fakePool(t, s, nil)
				runs := 0
				err := p.Tx(t.Context(), pgx.TxOptions{}, insert(t.Context(), &runs))
				switch {
				case tt.wantClass < 0 && err != nil:
					t.Fatalf("Tx: %v, want nil", err)
				case tt.wantClass >= 0 && retry.Classify(err) != tt.wantClass:
					t.Fatalf("Tx: %v of class %v, want %v", err, retry.Classify(err), tt.wantClass)
				}
				if runs != tt.wantRuns {
					t.Errorf("fn ran %d times, want %d", runs, tt.wantRuns)
				}
				synctest.Wait()
				if got := p.Stats().AcquiredConns; got != 0 {
					t.Errorf("%d connections still held after Tx", got)
				}
			})
		})
	}
}

func TestACommitThatFnMakesItselfFollowsTxsRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := &txServer{commits: []pgfake.Reply{pgfake.Drop()}, status: "committed"}
		s := fakeServer(t, ts.handle)
		p := fakePool(t, s, nil)
		runs := 0
		err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
			if err := insert(t.Context(), &runs)(tx); err != nil {
				return err
			}
			if err := tx.Commit(t.Context()); err != nil {
				return err
			}
			if err := tx.Commit(t.Context()); !errors.Is(err, pgx.ErrTxClosed) {
				t.Errorf("a second Commit: %v, want ErrTxClosed", err)
			}
			return nil
		})
		if err != nil || runs != 1 || p.Stats().ResolvedCommitted != 1 {
			t.Fatalf("Tx: %v after %d runs, %d resolved committed; want nil after 1, 1", err, runs, p.Stats().ResolvedCommitted)
		}
		err = p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error { return tx.Rollback(t.Context()) })
		if err != nil {
			t.Fatalf("Tx whose fn rolled back and returned nil: %v", err)
		}
	})
}

func TestBeginHandsOutATransactionThatGivesItsConnectionBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ts := &txServer{}
		s := fakeServer(t, ts.handle)
		p := fakePool(t, s, nil)
		for _, end := range []func(pgx.Tx) error{
			func(tx pgx.Tx) error { return tx.Commit(t.Context()) },
			func(tx pgx.Tx) error { return tx.Rollback(t.Context()) },
		} {
			tx, err := p.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(t.Context(), "INSERT INTO t VALUES ($1)", 1); err != nil {
				t.Fatal(err)
			}
			if err := end(tx); err != nil {
				t.Fatal(err)
			}
			if got := p.Stats().AcquiredConns; got != 0 {
				t.Fatalf("%d connections held after the transaction ended", got)
			}
		}
	})
}
