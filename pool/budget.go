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

// budgetCtx is the acquire context of a caller whose context never ends: its values, and the
// epoch's deadline.
type budgetCtx struct {
	context.Context // the caller's: Done is nil, Err is always nil
	e               *epoch
}

func (c *budgetCtx) Deadline() (time.Time, bool) { return c.e.end, true }
func (c *budgetCtx) Done() <-chan struct{}       { return c.e.done }

func (c *budgetCtx) Err() error {
	select {
	case <-c.e.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
