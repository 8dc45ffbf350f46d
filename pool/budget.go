package pool

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// budgetSlack is how much an acquire budget may be rounded up so that the calls made within
// one such window share one timer: a caller's wait for a connection may end up to 100 ms after
// its AcquireTimeout.
const budgetSlack = 100 * time.Millisecond

// budgets hands out acquire deadlines for callers whose context can never end (its Done is
// nil, as context.Background's): instead of a context.WithDeadline per call (a timer, a
// channel and three more allocations), the calls whose budgets end within the same
// budgetSlack share one epoch, whose channel a single timer closes. Safe for concurrent use.
type budgets struct {
	mu     sync.Mutex
	cur    atomic.Pointer[epoch]
	live   map[*epoch]struct{} // epochs whose timer has not fired
	closed bool
}

// epoch is a shared deadline.
type epoch struct {
	end   time.Time
	done  chan struct{}
	timer *time.Timer
	once  sync.Once
}

// fire closes e's channel, once: at its deadline, or when the pool closes.
func (e *epoch) fire() { e.once.Do(func() { close(e.done) }) }

// at returns an epoch that ends at or after d, and at most budgetSlack after it. After stop,
// it returns an epoch that has ended.
func (b *budgets) at(d time.Time) *epoch {
	if e := b.cur.Load(); e != nil && !e.end.Before(d) && e.end.Sub(d) <= budgetSlack {
		return e
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.cur.Load(); e != nil && !e.end.Before(d) && e.end.Sub(d) <= budgetSlack {
		return e
	}
	e := &epoch{end: d.Add(budgetSlack), done: make(chan struct{})}
	if b.closed {
		e.fire()
		return e
	}
	if b.live == nil {
		b.live = map[*epoch]struct{}{}
	}
	b.live[e] = struct{}{}
	e.timer = time.AfterFunc(time.Until(e.end), func() {
		e.fire()
		b.mu.Lock()
		delete(b.live, e)
		b.mu.Unlock()
	})
	b.cur.Store(e)
	return e
}

// stop ends every epoch at once, when the pool closes: the callers still waiting on one stop
// waiting (and get ErrClosed), and no timer is left behind.
func (b *budgets) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for e := range b.live {
		e.timer.Stop()
		e.fire()
	}
	b.live = nil
}

// wait returns the context of one wait for a connection whose call's acquire budget ends at
// end, before ctx's deadline if ctx has one. Call stop when the wait is over.
//
// It costs one allocation, and no timer of its own, where a context.WithDeadline costs five
// and a timer: a ctx that can never end (Done nil, as context.Background's) gets the shared
// epoch of end (see budgets). A ctx that can end (an HTTP request's) gets a deadline of its
// own only when the wait can block: pgxpool (puddle) first looks at Done without waiting, and
// hands out an idle connection without looking again, so the first look gets ctx's own Done,
// and only a later one, made to wait, gets a channel that also closes at end. That rests on
// puddle's order of looks; TestFaultPoolExhausted (itest/pool) fails should it change: there
// an exhausted pool must end a wait with a cancelable context at AcquireTimeout.
func (b *budgets) wait(ctx context.Context, end time.Time) *waitCtx {
	w := &waitCtx{Context: ctx, end: end}
	if ctx.Done() == nil {
		w.e = b.at(end)
		w.end = w.e.end
	}
	return w
}

// waitCtx is the context of one wait for a connection: the caller's values, and a deadline
// that ends the wait at the call's acquire budget (see budgets.wait).
type waitCtx struct {
	context.Context // the caller's
	end             time.Time
	e               *epoch // for a caller whose context never ends

	mu       sync.Mutex
	looked   bool               // Done was called
	deadline context.Context    // made by the second call of Done, for a caller whose context can end; ended after stop
	cancel   context.CancelFunc // deadline's
}

func (w *waitCtx) Deadline() (time.Time, bool) { return w.end, true }

func (w *waitCtx) Done() <-chan struct{} {
	if w.e != nil {
		return w.e.done
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.deadline != nil:
	case !w.looked:
		w.looked = true
		return w.Context.Done() // the look that does not wait: nothing needs the budget yet
	default:
		w.deadline, w.cancel = context.WithDeadline(w.Context, w.end)
	}
	return w.deadline.Done()
}

// Err answers for the channel Done returned last.
func (w *waitCtx) Err() error {
	if w.e != nil {
		select {
		case <-w.e.done:
			return context.DeadlineExceeded
		default:
			return nil
		}
	}
	w.mu.Lock()
	d := w.deadline
	w.mu.Unlock()
	if d != nil {
		return d.Err()
	}
	return w.Context.Err()
}

// stop ends the wait: a deadline made for it is released, and a Done called after it (by a
// goroutine pgxpool or the context package left behind) gets a closed channel.
func (w *waitCtx) stop() {
	if w.e != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
	}
	w.deadline = ended
}

// ended is a context that has ended.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
