package xact_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/internal/xact"
)

// The tests that talk to a server use pgfake, inside testing/synctest: they check what xact
// does with each answer. internal/testkit/itest/pool (xact_test.go, resolve_fault_test.go)
// checks the answers a real PostgreSQL gives.

func TestParseStatus(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	tests := []struct {
		in   *string
		want xact.Status
	}{
		{str("committed"), xact.Committed},
		{str("aborted"), xact.Aborted},
		{str("in progress"), xact.InProgress},
		{nil, xact.Unknown}, // NULL: the id is older than the commit log kept
		{str("something new"), xact.Unknown},
	}
	for _, tt := range tests {
		if got := xact.ParseStatus(tt.in); got != tt.want {
			t.Errorf("ParseStatus(%v) = %v, want %v", tt.in, got, tt.want)
		}
		if got := tt.want.String(); got == "" {
			t.Errorf("%d has no name", tt.want)
		}
	}
}

func TestUncertain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"tx already closed", pgx.ErrTxClosed, false},
		{"commit turned into rollback", fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback), false},
		{"deferred constraint violated at commit", &pgconn.PgError{Severity: "ERROR", Code: "23505"}, false},
		{"serialization failure at commit", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, false},
		{"backend terminated, maybe after committing", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"connection lost", io.ErrUnexpectedEOF, true},
		{"caller's deadline", context.DeadlineExceeded, true},
		{"unknown", errors.New("boom"), true},
	}
	for _, tt := range tests {
		if got := xact.Uncertain(tt.err); got != tt.want {
			t.Errorf("%s: Uncertain(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// fakeConn connects pgx to s.
func fakeConn(t *testing.T, s *pgfake.Server) *pgx.Conn {
	t.Helper()
	cc, err := pgx.ParseConfig(pgfake.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cc.DialFunc = s.Dial
	c, err := pgx.ConnectConfig(t.Context(), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// fakePgxPool is a pgxpool on s, which opens a connection for each lookup that needs one.
func fakePgxPool(t *testing.T, s *pgfake.Server) *pgxpool.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(pgfake.DSN)
	if err != nil {
		t.Fatal(err)
	}
	pc.ConnConfig.DialFunc = s.Dial
	p, err := pgxpool.NewWithConfig(t.Context(), pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestBeginLearnsTheTransactionsIdWithBEGIN(t *testing.T) {
	tests := []struct {
		name    string
		current pgfake.Reply // the answer to pg_current_xact_id()
		wantRef xact.Ref
		wantErr bool
	}{
		{"the id and the crash stamp", pgfake.Rows([]string{"id", "stamp"}, []any{"729", "s1"}), xact.NewRef(729, "s1"), false},
		{"refused on a standby: rolled back", pgfake.Fail("25006", "cannot assign TransactionIds during recovery"), xact.Ref{}, true},
		{"an id that is not a number", pgfake.Rows([]string{"id", "stamp"}, []any{"x", "s1"}), xact.Ref{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := pgfake.New(func(q pgfake.Query) pgfake.Reply {
					if strings.Contains(q.SQL, "pg_current_xact_id()") {
						return tt.current
					}
					return pgfake.Reply{}
				})
				t.Cleanup(s.Close)
				c := fakeConn(t, s)
				tx, ref, err := xact.Begin(t.Context(), c, pgx.TxOptions{})
				if (err != nil) != tt.wantErr || ref != tt.wantRef || (tx == nil) != tt.wantErr {
					t.Fatalf("Begin: tx %v, ref %+v, err %v; want ref %+v, error %v", tx, ref, err, tt.wantRef, tt.wantErr)
				}
				if tx != nil {
					if err := tx.Commit(t.Context()); err != nil {
						t.Fatal(err)
					}
				}
				if got := c.PgConn().TxStatus(); got != 'I' {
					t.Fatalf("the connection is left in transaction status %c", got)
				}
				if ref.Xid() != tt.wantRef.Xid() || ref.Stamp() != tt.wantRef.Stamp() {
					t.Fatalf("Xid %d, Stamp %q", ref.Xid(), ref.Stamp())
				}
			})
		})
	}
}

func TestResolveAsksUntilTheOutcomeIsKnownOrKnowablyUnknown(t *testing.T) {
	status := func(st any, stamp string) pgfake.Reply {
		return pgfake.Rows([]string{"status", "stamp"}, []any{st, stamp})
	}
	committed, aborted, running := status("committed", "s1"), status("aborted", "s1"), status("in progress", "s1")
	tests := []struct {
		name    string
		ref     xact.Ref
		answers []pgfake.Reply // in turn; the last one repeats
		want    xact.Status
		wantErr func(error) bool
		asks    int // lookups made; 0: don't check
	}{
		{"committed", xact.NewRef(729, "s1"), []pgfake.Reply{committed}, xact.Committed, isNil, 1},
		{"aborted", xact.NewRef(729, "s1"), []pgfake.Reply{aborted}, xact.Aborted, isNil, 1},
		{"too old (NULL)", xact.NewRef(729, "s1"), []pgfake.Reply{status(nil, "s1")}, xact.Unknown, isNil, 1},
		{"in progress, then committed", xact.NewRef(729, "s1"), []pgfake.Reply{running, running, committed}, xact.Committed, isNil, 3},
		{"in progress until the deadline", xact.NewRef(729, "s1"), []pgfake.Reply{running}, xact.InProgress, is(context.DeadlineExceeded), 0},
		{"the server crashed since: committed is not believed", xact.NewRef(729, "s1"), []pgfake.Reply{status("committed", "s2")}, xact.Unknown, is(xact.ErrIDReused), 1},
		{"the server crashed since: aborted still is", xact.NewRef(729, "s1"), []pgfake.Reply{status("aborted", "s2")}, xact.Aborted, isNil, 1},
		{"an id in the future (after a failover)", xact.NewRef(729, "s1"), []pgfake.Reply{pgfake.Fail("22023", "transaction ID 729 is in the future")}, xact.Unknown, code("22023"), 1},
		{"the lookup's connection killed once: asked again", xact.NewRef(729, "s1"), []pgfake.Reply{pgfake.Fatal("57P01", "terminating connection"), committed}, xact.Committed, isNil, 2},
		{"the lookup refused: unknown", xact.NewRef(729, "s1"), []pgfake.Reply{pgfake.Fail("42501", "permission denied")}, xact.Unknown, code("42501"), 1},
		{"the lookup failing until the deadline", xact.NewRef(729, "s1"), []pgfake.Reply{pgfake.Fatal("57P01", "terminating connection")}, xact.Unknown, is(context.DeadlineExceeded), 0},
		{"no id to look up", xact.Ref{}, []pgfake.Reply{committed}, xact.Unknown, notNil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var n atomic.Int32
				s := pgfake.New(func(q pgfake.Query) pgfake.Reply {
					if !strings.Contains(q.SQL, "pg_xact_status") {
						return pgfake.Reply{}
					}
					i := min(int(n.Add(1)), len(tt.answers))
					return tt.answers[i-1]
				})
				t.Cleanup(s.Close)
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				st, err := xact.Resolve(ctx, fakePgxPool(t, s), tt.ref)
				if st != tt.want || !tt.wantErr(err) {
					t.Fatalf("Resolve = %v, %v; want %v", st, err, tt.want)
				}
				if tt.asks > 0 && int(n.Load()) != tt.asks {
					t.Fatalf("asked %d times, want %d", n.Load(), tt.asks)
				}
			})
		})
	}
}

func isNil(err error) bool  { return err == nil }
func notNil(err error) bool { return err != nil }

func is(target error) func(error) bool {
	return func(err error) bool { return errors.Is(err, target) }
}

func code(c string) func(error) bool {
	return func(err error) bool {
		var pe *pgconn.PgError
		return errors.As(err, &pe) && pe.Code == c
	}
}
