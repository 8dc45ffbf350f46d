package pool

import (
	"context"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
)

func TestACallsWaitEndsAtTheEarlierOfTheCallersDeadlineAndTheBudget(t *testing.T) {
	t.Parallel()
	p := &Pool{cfg: config.Config{AcquireTimeout: time.Second}}
	start := time.Now()
	for _, tc := range []struct {
		name     string
		deadline time.Duration // from start; 0: none
		want     bound
	}{
		{"no deadline", 0, boundBudget},
		{"a deadline after the budget", 2 * time.Second, boundBudget},
		{"a deadline at the budget", time.Second, boundDeadline},
		{"a deadline before the budget", time.Second / 2, boundDeadline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, start.Add(tc.deadline))
				defer cancel()
			}
			cl := call{p: p, ctx: ctx, start: start}
			if got := cl.bound(); got != tc.want {
				t.Errorf("bound %v, want %v", got, tc.want)
			}
			if !cl.budget().Equal(start.Add(time.Second)) {
				t.Errorf("budget ends %v after start, want AcquireTimeout", cl.budget().Sub(start))
			}
		})
	}
}
