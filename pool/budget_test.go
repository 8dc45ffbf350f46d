package pool

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestBudgetsShareOneTimerPerWindowAndNeverEndEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b budgets
		defer b.stop()
		d := time.Now().Add(time.Second)
		e1 := b.at(d)
		e2 := b.at(d.Add(budgetSlack / 2))
		if e1 != e2 {
			t.Fatal("two budgets ending within the slack got two timers")
		}
		e3 := b.at(d.Add(2 * budgetSlack))
		if e3 == e1 {
			t.Fatal("a budget ending past the epoch got the epoch")
		}
		for _, tc := range []struct {
			d time.Time
			e *epoch
		}{{d, e1}, {d.Add(budgetSlack / 2), e2}, {d.Add(2 * budgetSlack), e3}} {
			if tc.e.end.Before(tc.d) || tc.e.end.Sub(tc.d) > budgetSlack {
				t.Fatalf("budget %v got an epoch ending %v later", tc.d, tc.e.end.Sub(tc.d))
			}
		}
		ctx := &budgetCtx{Context: context.Background(), e: e1}
		if ctx.Err() != nil {
			t.Fatal("a budget context is done before its deadline")
		}
		time.Sleep(time.Until(e1.end) + time.Millisecond)
		select {
		case <-ctx.Done():
		default:
			t.Fatal("the budget context is not done after its deadline")
		}
		if ctx.Err() != context.DeadlineExceeded {
			t.Fatalf("Err = %v, want DeadlineExceeded", ctx.Err())
		}
		if dl, ok := ctx.Deadline(); !ok || !dl.Equal(e1.end) {
			t.Fatalf("Deadline = %v, %v", dl, ok)
		}
	})
}
