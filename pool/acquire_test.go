package pool_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

var startingUp = &pgfake.Error{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}

func TestConnectFailuresAreRetriedUntilTheServerAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		s.Refuse(startingUp)
		p := fakePool(t, s, func(c *config.Config) {
			c.LazyStart = true
			c.Retry.OnRetry = func(attempt int, _ error, _ retry.Class, _ time.Duration) {
				if attempt == 2 {
					s.Refuse(nil)
				}
			}
		})
		if err := p.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v, want nil once the server accepts", err)
		}
		if got := p.Stats().Retries.NotSent; got != 2 {
			t.Fatalf("Retries.NotSent = %d, want 2", got)
		}
	})
}

func TestACallThatGetsNoConnectionEndsWithinItsBudget(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration // the caller's; 0: none
		down     bool          // the server refuses connections; else the pool is exhausted
	}{
		{"server down: AcquireTimeout ends the retries", 0, true},
		{"pool exhausted: AcquireTimeout", 0, false},
		{"pool exhausted: the caller's deadline", time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := fakeServer(t, nil)
				p := fakePool(t, s, func(c *config.Config) {
					c.Size, c.Overflow, c.AcquireTimeout, c.LazyStart = 1, 0, 3*time.Second, true
				})
				if tt.down {
					s.Refuse(startingUp)
				} else {
					c, err := p.Acquire(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					defer c.Release()
				}
				ctx := t.Context()
				if tt.deadline > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.deadline)
					defer cancel()
				}
				_, err := p.Exec(ctx, "SELECT 'x'")
				var te *pool.TimeoutError
				if !errors.As(err, &te) || !errors.Is(err, pool.ErrPoolTimeout) || !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v, want a *TimeoutError", err)
				}
				if te.Max != 1 {
					t.Errorf("TimeoutError.Max = %d, want 1", te.Max)
				}
				var pe *pgconn.PgError
				if gotDown := errors.As(te.LastErr, &pe) && pe.Code == "57P03"; gotDown != tt.down {
					t.Errorf("LastErr = %v: says the server is down %v, want %v", te.LastErr, gotDown, tt.down)
				}
				if !tt.down && te.InUse != 1 {
					t.Errorf("TimeoutError.InUse = %d, want 1", te.InUse)
				}
				if got := p.Stats().AcquireTimeouts; got == 0 {
					t.Error("Stats.AcquireTimeouts = 0")
				}
				if got := count(s, "SELECT 'x'"); got != 0 {
					t.Errorf("the statement was sent %d times without a connection", got)
				}
			})
		})
	}
}

func TestACallToAServerThatStaysDownEndsAtTheCallersDeadlineWithTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		s.Refuse(startingUp)
		p := fakePool(t, s, func(c *config.Config) { c.LazyStart = true })
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := p.Exec(ctx, "SELECT 'x'")
		var re *retry.Error
		var pe *pgconn.PgError
		if !errors.As(err, &re) || re.Class != retry.NotSent || re.Attempts < 2 || !errors.As(err, &pe) || pe.Code != "57P03" {
			t.Fatalf("err = %v, want a *retry.Error of class not-sent after several attempts, wrapping the 57P03", err)
		}
	})
}
