package pool_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

const write = "INSERT INTO t VALUES (1) RETURNING 'x'"

var readOnly = pgfake.Fail("25006", "cannot execute INSERT in a read-only transaction")

// probe answers the pool's question after a 25006 (pg_is_in_recovery(), and the source of a
// read-only default), or fails with the reply given.
func probe(inRecovery bool, source string) pgfake.Reply {
	return pgfake.Rows([]string{"pg_is_in_recovery", "source"}, []any{inRecovery, source})
}

// refusingServer refuses the n-th write with 25006 where refuse(connection number, n) says so,
// and answers the probe with answer.
func refusingServer(t *testing.T, refuse func(conn, n int) bool, answer pgfake.Reply) *pgfake.Server {
	var writes atomic.Int32
	return fakeServer(t, func(q pgfake.Query) pgfake.Reply {
		n := 0
		if strings.HasPrefix(q.SQL, "INSERT") {
			n = int(writes.Add(1))
		}
		switch {
		case strings.Contains(q.SQL, "pg_is_in_recovery"):
			return answer
		case n > 0 && refuse(q.Conn, n):
			return readOnly
		case strings.HasPrefix(q.SQL, "INSERT"):
			return oneRow
		}
		return pgfake.Reply{}
	})
}

func TestAWriteRefusedAsReadOnlyIsJudgedByAskingTheServer(t *testing.T) {
	firstOnly := func(_, n int) bool { return n == 1 }
	tests := []struct {
		name          string
		params        map[string]string      // reported at startup, over pgfake's (PostgreSQL 16, writable)
		refuse        func(conn, n int) bool // nil: the writes on connection 1
		answer        pgfake.Reply
		wantErr       bool // the caller gets the 25006, not retried
		wantProbes    int
		wantFailovers int64
		wantReadOnly  int64 // Stats.ReadOnlyErrors
	}{
		{"PostgreSQL 13, in recovery: a failover, retried on a new connection",
			map[string]string{"in_hot_standby": ""}, nil, probe(true, ""), false, 1, 1, 0},
		{"PostgreSQL 13, read-only for every session (configuration file): a failover",
			map[string]string{"in_hot_standby": ""}, nil, probe(false, "configuration file"), false, 1, 1, 0},
		{"PostgreSQL 13, a role made read-only: the caller's",
			map[string]string{"in_hot_standby": ""}, nil, probe(false, "user"), true, 1, 0, 1},
		{"PostgreSQL 13, the server cannot be asked: retried, no reaction",
			map[string]string{"in_hot_standby": ""}, firstOnly, pgfake.Fail("42501", "permission denied"), false, 1, 0, 0},
		{"PostgreSQL 14+, session reported writable on a primary: the caller's, without asking",
			nil, nil, probe(true, ""), true, 0, 0, 1},
		{"PostgreSQL 14+, a session made read-only (reported): asked, the caller's",
			map[string]string{"default_transaction_read_only": "on"}, nil, probe(false, "database"), true, 1, 0, 1},
		{"a pool that reached a hot standby: recovery is expected, the caller's",
			map[string]string{"in_hot_standby": "on"}, nil, probe(true, ""), true, 1, 0, 1},
	}
	for _, call := range statementCalls {
		for _, tt := range tests {
			t.Run(call.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					refuse := tt.refuse
					if refuse == nil {
						refuse = func(conn, _ int) bool { return conn == 1 }
					}
					s := refusingServer(t, refuse, tt.answer)
					for k, v := range tt.params {
						s.SetParam(k, v)
					}
					p := fakePool(t, s, nil)
					err := call.run(t.Context(), p, write)
					if gotErr := err != nil; gotErr != tt.wantErr {
						t.Fatalf("err = %v, want an error %v", err, tt.wantErr)
					}
					if tt.wantErr && (retry.Classify(err) != retry.Permanent || retry.MayRetryLater(err)) {
						t.Errorf("the caller's 25006 is of class %v, MayRetryLater %v; want permanent, false", retry.Classify(err), retry.MayRetryLater(err))
					}
					if got := count(s, "pg_is_in_recovery"); got != tt.wantProbes {
						t.Errorf("asked the server %d times, want %d", got, tt.wantProbes)
					}
					st := p.Stats()
					if st.Failovers != tt.wantFailovers || st.ReadOnlyErrors != tt.wantReadOnly {
						t.Errorf("Failovers %d, ReadOnlyErrors %d; want %d, %d", st.Failovers, st.ReadOnlyErrors, tt.wantFailovers, tt.wantReadOnly)
					}
				})
			})
		}
	}
}

func TestASessionFoundReadOnlyByItsRoleIsNotAskedAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := refusingServer(t, func(int, int) bool { return true }, probe(false, "user"))
		s.SetParam("in_hot_standby", "")
		p := fakePool(t, s, nil)
		for range 3 {
			if _, err := p.Exec(t.Context(), write); err == nil {
				t.Fatal("a write through a read-only role succeeded")
			}
		}
		if got := count(s, "pg_is_in_recovery"); got != 1 {
			t.Fatalf("asked %d times, want once for the session", got)
		}
		if got := p.Stats().ReadOnlyErrors; got != 3 {
			t.Fatalf("ReadOnlyErrors = %d, want 3", got)
		}
	})
}

func TestTheCallersReadOnlyTransactionIsNotAFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := refusingServer(t, func(int, int) bool { return true }, probe(true, ""))
		s.SetParam("in_hot_standby", "")
		p := fakePool(t, s, nil)
		runs := 0
		err := p.Tx(t.Context(), pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			runs++
			_, err := tx.Exec(t.Context(), write)
			return err
		})
		if retry.Classify(err) != retry.Permanent || runs != 1 {
			t.Fatalf("Tx: %v after %d runs, want the 25006 after 1", err, runs)
		}
		if count(s, "pg_is_in_recovery") != 0 || p.Stats().Failovers != 0 || p.Stats().ReadOnlyErrors != 1 {
			t.Fatalf("probes %d, Stats %+v: want no probe, no failover, one read-only error", count(s, "pg_is_in_recovery"), p.Stats())
		}
	})
}

// One confirmation an incident: a failover confirmed on one connection condemns every
// connection opened before it, so a busy one that meets the same refusal later is retried
// without asking the server again.
func TestAConfirmedFailoverCoversTheConnectionsOpenedBeforeIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := refusingServer(t, func(conn, _ int) bool { return conn <= 2 }, probe(true, ""))
		s.SetParam("in_hot_standby", "")
		p := fakePool(t, s, nil, pool.WithoutCommitResolution())
		inside, proceed := make(chan struct{}), make(chan struct{})
		txErr := make(chan error)
		runs := 0
		go func() {
			txErr <- p.Tx(context.Background(), pgx.TxOptions{}, func(tx pgx.Tx) error {
				if runs++; runs == 1 {
					close(inside)
					<-proceed
				}
				_, err := tx.Exec(context.Background(), write)
				return err
			})
		}()
		<-inside // connection 1 is busy in the transaction
		if _, err := p.Exec(t.Context(), write); err != nil {
			t.Fatalf("Exec on connection 2: %v, want it retried after the failover", err)
		}
		close(proceed)
		if err := <-txErr; err != nil || runs != 2 {
			t.Fatalf("Tx: %v after %d runs, want nil after 2", err, runs)
		}
		if got := count(s, "pg_is_in_recovery"); got != 1 {
			t.Errorf("asked the server %d times, want once", got)
		}
		if got := p.Stats().Failovers; got != 1 {
			t.Errorf("Failovers = %d, want 1", got)
		}
	})
}
