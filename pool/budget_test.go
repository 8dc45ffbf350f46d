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
		ctx := b.wait(context.Background(), d.Add(2*budgetSlack))
		if ctx.e != e3 {
			t.Fatal("a wait without a deadline of its own did not get the epoch of its budget")
		}
		if ctx.Err() != nil {
			t.Fatal("a budget context is done before its deadline")
		}
		time.Sleep(time.Until(e3.end) + time.Millisecond)
		select {
		case <-ctx.Done():
		default:
			t.Fatal("the budget context is not done after its deadline")
		}
		if ctx.Err() != context.DeadlineExceeded {
			t.Fatalf("Err = %v, want DeadlineExceeded", ctx.Err())
		}
		if dl, ok := ctx.Deadline(); !ok || !dl.Equal(e3.end) {
			t.Fatalf("Deadline = %v, %v", dl, ok)
		}
	})
}

func TestAWaitWithACancelableContextEndsAtTheBudgetOnceItWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b budgets
		defer b.stop()
		parent, cancel := context.WithCancel(context.Background())
		defer cancel()
		end := time.Now().Add(time.Second)
		w := b.wait(parent, end)
		if w.Done() != parent.Done() {
			t.Fatal("the first look at Done, which does not wait, cost a deadline")
		}
		done := w.Done() // a look made to wait
		if done == parent.Done() {
			t.Fatal("a wait got the caller's Done, which the budget does not close")
		}
		if dl, ok := w.Deadline(); !ok || !dl.Equal(end) {
			t.Fatalf("Deadline = %v, %v, want the budget", dl, ok)
		}
		time.Sleep(time.Until(end))
		<-done
		if w.Err() != context.DeadlineExceeded {
			t.Fatalf("Err = %v after the budget, want DeadlineExceeded", w.Err())
		}
		w.stop()
	})
}

func TestAWaitEndsWithTheCallersContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b budgets
		defer b.stop()
		parent, cancel := context.WithCancel(context.Background())
		w := b.wait(parent, time.Now().Add(time.Hour))
		w.Done()
		done := w.Done()
		cancel()
		<-done
		if w.Err() != context.Canceled {
			t.Fatalf("Err = %v, want the caller's Canceled", w.Err())
		}
		w.stop()
	})
}

func TestAWaitThatEndedIsDoneWithAnErr(t *testing.T) {
	// A goroutine pgxpool leaves behind must not wait for good; and the context package derives
	// a child's end from its parent's Done and Err: a closed Done with a nil Err made it panic
	// ("missing cancel error").
	var b budgets
	defer b.stop()
	w := b.wait(t.Context(), time.Now().Add(time.Hour))
	w.Done()
	w.stop()
	select {
	case <-w.Done():
	default:
		t.Fatal("a goroutine looking at the wait after it ended would wait for good")
	}
	child, cancel := context.WithCancel(w)
	defer cancel()
	if child.Err() == nil || w.Err() == nil {
		t.Fatalf("after the wait: Err %v, its child's %v, with Done closed", w.Err(), child.Err())
	}
}
