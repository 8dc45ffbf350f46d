package pool_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
)

// fakeMember is one server of a fake cluster: where it is in the WAL, and whether it is in
// recovery, as its lag check and its position after a write say.
type fakeMember struct {
	*pgfake.Server
	lsn       atomic.Int64
	recovery  atomic.Bool
	dropReads atomic.Bool // SELECT 'x' loses its connection
}

func newFakeMember(t *testing.T, lsn int64, recovery bool) *fakeMember {
	m := &fakeMember{}
	m.lsn.Store(lsn)
	m.recovery.Store(recovery)
	m.Server = fakeServer(t, func(q pgfake.Query) pgfake.Reply {
		switch {
		case strings.Contains(q.SQL, "pg_last_wal_replay_lsn"): // the lag check
			return pgfake.Rows([]string{"recovery", "lsn", "age", "read_only"}, []any{m.recovery.Load(), m.lsn.Load(), 0.0, false})
		case strings.HasPrefix(q.SQL, "SELECT (pg_current_wal_insert_lsn()"): // the position after a write
			return pgfake.Rows([]string{"lsn"}, []any{m.lsn.Load()})
		case q.SQL == "SELECT 'x'" && m.dropReads.Load():
			return pgfake.Drop()
		case q.SQL == "SELECT 'x'":
			return oneRow
		case strings.HasPrefix(q.SQL, "INSERT"):
			return pgfake.Tag("INSERT 0 1")
		}
		return pgfake.Reply{}
	})
	return m
}

// fakeCluster builds a cluster of primary (at 127.0.0.1) and replica (at 127.0.0.2), checked
// every second.
func fakeCluster(t *testing.T, primary, replica *fakeMember) *pool.Cluster {
	t.Helper()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "127.0.0.2") {
			return replica.Dial(ctx, network, addr)
		}
		return primary.Dial(ctx, network, addr)
	}
	parse := func(host string) *config.Config {
		cfg, err := config.Parse(strings.Replace(pgfake.DSN, "127.0.0.1", host, 1))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	c, err := pool.NewCluster(t.Context(), parse("127.0.0.1"), []*config.Config{parse("127.0.0.2")},
		pool.WithLagCheckEvery(time.Second),
		pool.WithMemberOptions(pool.WithPgxConfig(func(pc *pgxpool.Config) { pc.ConnConfig.DialFunc = dial })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	time.Sleep(time.Second + time.Millisecond) // a round of checks
	return c
}

func TestAReadGoesToAReplicaWithinTheLagBoundElseToThePrimary(t *testing.T) {
	for _, tt := range []struct {
		name        string
		replicaLSN  int64
		replicaDown bool
		wantReplica bool
	}{
		{"caught up: the replica", 1 << 30, false, true},
		{"within the bound (16 MB): the replica", 1<<30 - 1<<20, false, true},
		{"behind the bound: the primary", 1<<30 - 64<<20, false, false},
		{"down: the primary", 1 << 30, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				primary, replica := newFakeMember(t, 1<<30, false), newFakeMember(t, tt.replicaLSN, true)
				replica.Down(tt.replicaDown)
				c := fakeCluster(t, primary, replica)
				var v string
				if err := c.Replica().QueryRow(t.Context(), "SELECT 'x'").Scan(&v); err != nil {
					t.Fatalf("read: %v", err)
				}
				if got := count(replica.Server, "SELECT 'x'") == 1; got != tt.wantReplica {
					t.Fatalf("served by the replica: %v, want %v (primary %d, replica %d)", got, tt.wantReplica,
						count(primary.Server, "SELECT 'x'"), count(replica.Server, "SELECT 'x'"))
				}
				if st := c.Stats(); !tt.wantReplica && st.PrimaryReadsNoReplica != 1 {
					t.Errorf("PrimaryReadsNoReplica = %d, want 1", st.PrimaryReadsNoReplica)
				}
			})
		})
	}
}

func TestAReadAfterAWriteWaitsForAReplicaThatReplayedIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		primary, replica := newFakeMember(t, 1000, false), newFakeMember(t, 1000, true)
		c := fakeCluster(t, primary, replica)
		primary.lsn.Store(2000) // the write's position
		ctx := pool.WithReadYourWrites(t.Context())
		if _, err := c.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		var v string
		if err := c.Replica().QueryRow(ctx, "SELECT 'x'").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if count(primary.Server, "SELECT 'x'") != 1 || c.Stats().PrimaryReadsForWrites != 1 {
			t.Fatalf("the read before the replica replayed the write: primary %d, PrimaryReadsForWrites %d; want 1, 1",
				count(primary.Server, "SELECT 'x'"), c.Stats().PrimaryReadsForWrites)
		}
		replica.lsn.Store(2000)
		time.Sleep(time.Second) // the next check
		if err := c.Replica().QueryRow(ctx, "SELECT 'x'").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if count(replica.Server, "SELECT 'x'") != 1 {
			t.Fatal("the read after the replica replayed the write did not go to it")
		}
	})
}

func TestAReplicaFoundOutOfRecoveryWhileThePrimaryIsInRecoveryBecomesThePrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		primary, replica := newFakeMember(t, 1000, false), newFakeMember(t, 1000, true)
		c := fakeCluster(t, primary, replica)
		primary.recovery.Store(true)  // demoted
		replica.recovery.Store(false) // promoted
		time.Sleep(time.Second)
		if _, err := c.Exec(t.Context(), "INSERT INTO t VALUES (1)"); err != nil {
			t.Fatal(err)
		}
		if count(replica.Server, "INSERT") != 1 || c.Stats().Promotions != 1 {
			t.Fatalf("the write after the promotion: on the former replica %d times, Promotions %d; want 1, 1",
				count(replica.Server, "INSERT"), c.Stats().Promotions)
		}
	})
}

func TestAReadThatFailsOnAReplicaMovesToThePrimary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		primary, replica := newFakeMember(t, 1000, false), newFakeMember(t, 1000, true)
		c := fakeCluster(t, primary, replica)
		replica.dropReads.Store(true)
		var v string
		if err := c.Replica().QueryRow(t.Context(), "SELECT 'x'").Scan(&v); err != nil {
			t.Fatalf("read: %v, want it served by the primary", err)
		}
		if count(replica.Server, "SELECT 'x'") != 1 || count(primary.Server, "SELECT 'x'") != 1 || c.Stats().ReplicaFallbacks != 1 {
			t.Fatalf("replica %d, primary %d, ReplicaFallbacks %d; want 1, 1, 1",
				count(replica.Server, "SELECT 'x'"), count(primary.Server, "SELECT 'x'"), c.Stats().ReplicaFallbacks)
		}
	})
}
