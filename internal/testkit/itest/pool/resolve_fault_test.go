package pool_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// loseCommitAnswer makes the answer to what is sent next (COMMIT) never arrive: the proxy
// stalls responses, and 300 ms later resets every flow, and then, if resume, lets new flows
// work again.
func loseCommitAnswer(proxy *faultproxy.Proxy, resume bool) {
	proxy.StallResponses()
	time.AfterFunc(300*time.Millisecond, func() {
		proxy.ResetAll()
		if resume {
			proxy.Resume()
		}
	})
}

// countWrites returns how many rows of writes have key.
func countWrites(t *testing.T, dsn, key string) int {
	t.Helper()
	direct := newPool(t, dsn, nil)
	var n int
	if err := direct.QueryRow(t.Context(), "SELECT count(*) FROM writes WHERE key = $1", key).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A lost COMMIT is resolved with a spare slot, and in a full pool too: Size 1, Overflow 0, the
// dead connection given back before the lookup needs one (it waited out AcquireTimeout on its
// own slot before).
func TestTxResolvesALostCommitThatCommitted(t *testing.T) {
	for _, tc := range []struct {
		name           string
		size, overflow int
	}{{"a spare slot", 1, 1}, {"a full pool", 1, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			dsn := freshDB(t)
			proxy := newProxy(t)
			p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
				c.Size, c.Overflow = tc.size, tc.overflow
				c.AcquireTimeout = 5 * time.Second
			})
			calls := 0
			err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
				calls++
				if _, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('resolved')"); err != nil {
					return err
				}
				// COMMIT reaches the server, its answer does not reach the pool; then the flow dies.
				loseCommitAnswer(proxy, true)
				return nil
			})
			if err != nil {
				t.Fatalf("Tx = %v, want nil: the server committed, and the pool can ask it", err)
			}
			if calls != 1 {
				t.Fatalf("fn ran %d times, want once: it committed", calls)
			}
			if n := countWrites(t, dsn, "resolved"); n != 1 {
				t.Fatalf("%d rows, want exactly 1", n)
			}
			if st := p.Stats(); st.ResolvedCommitted != 1 || st.AmbiguousCommits != 0 {
				t.Fatalf("stats: resolved committed %d, ambiguous %d; want 1 and 0", st.ResolvedCommitted, st.AmbiguousCommits)
			}
		})
	}
}

func TestTxRunsFnAgainWhenTheLostCommitHadRolledBack(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn := freshDB(t)
	p := newPool(t, dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 1 })
	admin := newPool(t, s.AdminDSN(), nil)
	calls := 0
	err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
		calls++
		if _, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('aborted-then-rerun')"); err != nil {
			return err
		}
		if calls == 1 {
			// The session dies before COMMIT is sent; pgx learns it only from COMMIT's answer (a
			// FATAL), which could also follow a completed commit. The server knows better.
			var pid int
			if err := tx.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				return err
			}
			if _, err := admin.Exec(t.Context(), "SELECT pg_terminate_backend($1)", pid); err != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Tx = %v, want nil after running fn again", err)
	}
	if calls != 2 {
		t.Fatalf("fn ran %d times, want twice: the first transaction provably rolled back", calls)
	}
	if n := countWrites(t, dsn, "aborted-then-rerun"); n != 1 {
		t.Fatalf("%d rows, want exactly 1", n)
	}
	if st := p.Stats(); st.ResolvedAborted != 1 {
		t.Fatalf("stats: resolved aborted %d, want 1", st.ResolvedAborted)
	}
}

func TestTxReportsAmbiguousWhenTheLookupIsImpossible(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
		c.Size, c.Overflow = 1, 0
		c.AcquireTimeout = 2 * time.Second
	})
	err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('unknowable')"); err != nil {
			return err
		}
		// The answer is lost and the server stays out of reach: nothing can be learned.
		loseCommitAnswer(proxy, false)
		return nil
	})
	var amb *pool.AmbiguousCommitError
	if !errors.As(err, &amb) {
		t.Fatalf("Tx = %v, want *AmbiguousCommitError", err)
	}
	if amb.Xid == 0 {
		t.Fatalf("the ambiguous error carries no transaction id: %v", err)
	}
	proxy.Resume()
	// The id it carries answers the question later.
	direct := newPool(t, dsn, nil)
	var status string
	if err := direct.QueryRow(context.Background(), "SELECT pg_xact_status($1::text::xid8)", strconv.FormatUint(amb.Xid, 10)).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "committed" {
		t.Fatalf("pg_xact_status(%d) = %s, want committed", amb.Xid, status)
	}
	if n := countWrites(t, dsn, "unknowable"); n != 1 {
		t.Fatalf("%d rows, want exactly 1", n)
	}
}

func TestWithoutCommitResolutionALostCommitIsAmbiguous(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), nil, pool.WithoutCommitResolution())
	err := p.Tx(t.Context(), pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "INSERT INTO writes (key) VALUES ('not-resolved')"); err != nil {
			return err
		}
		loseCommitAnswer(proxy, true)
		return nil
	})
	var amb *pool.AmbiguousCommitError
	if !errors.As(err, &amb) || amb.Xid != 0 {
		t.Fatalf("Tx = %v, want *AmbiguousCommitError without an id", err)
	}
}
