package pool_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// DBTX is the interface sqlc generates for pgx/v5 when a query file has a :copyfrom query
// (without one, the same minus CopyFrom).
type DBTX interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

var (
	_ DBTX = (*pool.Pool)(nil)
	_ DBTX = pool.Querier{}
	_ DBTX = (*pool.Cluster)(nil)
	_ DBTX = pool.Reader{}
)

func TestNewWaitsForAServerThatIsStartingAndFailsOnOneThatRefuses(t *testing.T) {
	tests := []struct {
		name    string
		refuse  *pgfake.Error
		wantErr bool
	}{
		{"starting up: New retries until it answers", startingUp, false},
		{"wrong password: New fails at once", &pgfake.Error{Severity: "FATAL", Code: "28P01", Message: `password authentication failed for user "app"`}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := fakeServer(t, nil)
				s.Refuse(tt.refuse)
				_, err := newFakePool(t, s, func(c *config.Config) {
					c.Retry.OnRetry = func(attempt int, _ error, _ retry.Class, _ time.Duration) {
						if attempt == 3 {
							s.Refuse(nil)
						}
					}
				})
				if (err != nil) != tt.wantErr {
					t.Fatalf("New: %v, want error %v", err, tt.wantErr)
				}
				if tt.wantErr && s.Accepted() != 1 {
					t.Fatalf("New connected %d times, want 1: a wrong password does not pass", s.Accepted())
				}
			})
		})
	}
}

// WarmUp opens Size connections before New returns, and no more: pgxpool's own MinConns
// creation runs in the background, and New waits for it rather than racing it (it did, and
// opened 5 for a Size of 3, the extra ones staying idle beyond Size until IdleTimeout).
func TestWarmUpOpensSizeConnections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		p := fakePool(t, s, func(c *config.Config) { c.Size, c.WarmUp = 3, true })
		if got := p.Stats(); got.IdleConns != 3 || s.Open() != 3 {
			t.Fatalf("after New with WarmUp: %d idle, %d open at the server; want 3, 3", got.IdleConns, s.Open())
		}
		synctest.Wait() // the pool's background work has nothing more to open
		if s.Accepted() != 3 {
			t.Fatalf("WarmUp with Size 3 connected %d times, want 3", s.Accepted())
		}
	})
}

func TestEveryCallAfterCloseGetsErrClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		p := fakePool(t, s, nil)
		p.Close()
		p.Close() // idempotent
		ctx := t.Context()
		_, errExec := p.Exec(ctx, "SELECT 'x'")
		_, errQuery := p.Query(ctx, "SELECT 'x'")
		var v string
		errRow := p.QueryRow(ctx, "SELECT 'x'").Scan(&v)
		errBatch := p.SendBatch(ctx, &pgx.Batch{}).Close()
		errTx := p.Tx(ctx, pgx.TxOptions{}, func(pgx.Tx) error { return nil })
		_, errBegin := p.Begin(ctx)
		_, errAcquire := p.Acquire(ctx)
		errDo := p.Idempotent().Do(ctx, func(context.Context) error { return nil })
		errFunc := p.AcquireFunc(ctx, func(*pgxpool.Conn) error { return nil })
		for i, err := range []error{p.Ping(ctx), errExec, errQuery, errRow, errBatch, errTx, errBegin, errAcquire, errDo, errFunc} {
			if !errors.Is(err, pool.ErrClosed) {
				t.Errorf("call %d after Close: %v, want ErrClosed", i, err)
			}
		}
		if idle := p.AcquireAllIdle(ctx); idle != nil {
			t.Errorf("AcquireAllIdle after Close: %d connections", len(idle))
		}
		synctest.Wait()
		if s.Open() != 0 {
			t.Errorf("%d connections open at the server after Close", s.Open())
		}
	})
}

func TestCloseWaitsForAHeldConnectionOnlyForTheGrace(t *testing.T) {
	for _, tt := range []struct {
		name      string
		heldFor   time.Duration
		wantAlive bool // the holder's statement after its wait still works
	}{
		{"given back within the grace", time.Second, true},
		{"held past the grace: its socket is closed", time.Minute, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := fakeServer(t, func(q pgfake.Query) pgfake.Reply { return oneRow })
				p := fakePool(t, s, nil, pool.WithCloseGrace(5*time.Second))
				c, err := p.Acquire(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				var holderErr error
				var released atomic.Bool
				done := make(chan struct{})
				go func() {
					defer close(done)
					time.Sleep(tt.heldFor)
					_, holderErr = c.Exec(context.Background(), "SELECT 'x'")
					released.Store(true)
					c.Release()
				}()
				p.Close()
				if backFirst := released.Load(); backFirst != tt.wantAlive {
					t.Errorf("Close returned with the connection given back %v, want %v", backFirst, tt.wantAlive)
				}
				<-done
				if (holderErr == nil) != tt.wantAlive {
					t.Fatalf("the holder's statement after %v: %v, want it to work %v", tt.heldFor, holderErr, tt.wantAlive)
				}
			})
		})
	}
}
