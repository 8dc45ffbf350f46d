package pool

import (
	"context"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/retry"
)

// countingObserver counts the events it gets.
type countingObserver struct{ n int }

func (c *countingObserver) Acquired(context.Context, time.Duration, error)                   { c.n++ }
func (c *countingObserver) Retrying(context.Context, int, retry.Class, error, time.Duration) { c.n++ }
func (c *countingObserver) PingFailed(context.Context, time.Duration, error)                 { c.n++ }
func (c *countingObserver) ConnClosed(string)                                                { c.n++ }
func (c *countingObserver) Committed(context.Context, string)                                { c.n++ }

func TestEveryObserverGetsEveryEvent(t *testing.T) {
	a, b := &countingObserver{}, &countingObserver{}
	var o options
	WithObserver(a)(&o)
	WithObserver(nil)(&o) // ignored
	WithObserver(b)(&o)
	obs := observerOf(o.observers)
	ctx := context.Background()
	obs.Acquired(ctx, 0, nil)
	obs.Retrying(ctx, 1, retry.NotSent, nil, 0)
	obs.PingFailed(ctx, 0, nil)
	obs.ConnClosed(CloseBroken)
	obs.Committed(ctx, CommitOK)
	if a.n != 5 || b.n != 5 {
		t.Fatalf("events seen: %d and %d, want 5 each", a.n, b.n)
	}
	if observerOf(nil) != nil {
		t.Fatal("no observer is not nil")
	}
	if observerOf([]Observer{a}) != a {
		t.Fatal("one observer is wrapped")
	}
}
