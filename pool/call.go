package pool

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// call is one call of a method of the pool, made when the method begins (for QueryRow, when
// Scan begins): the caller's context, the error classes the call retries, and its start. It
// owns the call's first attempt and the retries that follow ([call.run]), and keeps the
// promise the package documentation makes on time:
//
// A call returns within min(T, start + A) when it can get no connection, T being the caller's
// deadline (none: never) and A the config's AcquireTimeout. Every wait for a connection, in
// every attempt, ends at the call's bound ([call.bound]): the caller's deadline when it comes
// first, else the acquire budget start + A (rounded up by at most budgetSlack, see budgets). No
// retry begins after start + min(E, A), E being the Retry policy's MaxElapsed (the pool's
// policy, see callPolicy). A call whose waits or whose retries ran into the acquire budget
// ends with a *TimeoutError naming AcquireTimeout ([call.timeout]); one cut off by the caller's
// deadline while it waited, with a *TimeoutError naming that deadline.
//
// Where the pool's reactions attach to a call: an attempt that ran a statement ends in
// [call.settle], which judges a 25006 on the attempt's connection (failover.go); a lost COMMIT
// is looked up within the call's bound ([call.resolveCommit], tx.go).
type call struct {
	p     *Pool
	ctx   context.Context
	on    retry.Classes
	sql   string    // the statement, for a call that runs one: see wholeCall
	start time.Time // set by begin
}

// call returns the value of a call of one of p's methods, begun now, or ErrClosed.
func (p *Pool) call(ctx context.Context, on retry.Classes, sql string) (call, error) {
	cl := call{p: p, ctx: ctx, on: on, sql: sql}
	err := cl.begin()
	return cl, err
}

// begin starts the call's clock, unless the pool is closed.
func (cl *call) begin() error {
	if cl.p.closed.Load() {
		return ErrClosed
	}
	cl.start = time.Now()
	return nil
}

// budget is when the call's acquire budget ends: start + AcquireTimeout.
func (cl *call) budget() time.Time { return cl.start.Add(cl.p.cfg.AcquireTimeout) }

// bound names what ends a call's wait for a connection.
type bound int

const (
	boundBudget   bound = iota // the acquire budget: start + AcquireTimeout
	boundDeadline              // the caller's deadline, which comes first
)

// bound returns which bound ends the call's waits for a connection.
func (cl *call) bound() bound {
	if d, ok := cl.ctx.Deadline(); ok && !d.After(cl.budget()) {
		return boundDeadline
	}
	return boundBudget
}

// run makes the call's first attempt and, when it fails with an error of a class the call
// retries, the attempts that follow (see [call.retry]). attempt must get its connection
// itself, each time.
func (cl *call) run(attempt func() error) error {
	err := attempt()
	if err == nil {
		return nil
	}
	return cl.retry(wholeCall(cl.on, cl.sql), err, attempt)
}

// retry takes over after an attempt of the call returned err: when err is of a class in on,
// again runs under the call's retry policy ([retry.Continue] owns every stop condition). A
// closed pool stops the retries. Retries of connection failures that ran into the acquire
// budget end as a *TimeoutError naming AcquireTimeout, with the last failure as its LastErr.
// With on == noRetry (a Cluster's read on a replica, which moves to another member instead)
// the first error is final.
func (cl *call) retry(on retry.Classes, err error, again func() error) error {
	if err == nil || on == noRetry {
		return err
	}
	p := cl.p
	pol := p.policy.WithRetryOn(on)
	pol.OnRetry = func(attempt int, err error, class retry.Class, delay time.Duration) {
		p.retrying(cl.ctx, attempt, err, class, delay)
	}
	err = retry.Continue(cl.ctx, pol, cl.start, err, func(context.Context) error {
		if p.closed.Load() {
			return retry.Stop(ErrClosed)
		}
		return again()
	})
	if err == nil {
		return nil
	}
	var re *retry.Error
	if !errors.As(err, &re) {
		return err
	}
	var te *TimeoutError
	if errors.As(re.Err, &te) {
		return te // a later attempt's wait ran out: that is the whole story
	}
	if re.Class == retry.NotSent && re.Limit == retry.LimitElapsed && p.policy.MaxElapsed == p.cfg.AcquireTimeout {
		te = cl.timeout(boundBudget) // MaxElapsed was the acquire budget (see callPolicy)
		te.LastErr = re.Err
		return te
	}
	return err
}

// settle ends an attempt that ran a statement on c and got err: a 25006 is judged on c, which
// is where a failover is found (see failover.go), and c goes back to the pool.
func (cl *call) settle(c *pgxpool.Conn, err error) error {
	err = cl.p.judge(cl.ctx, c, err, false)
	cl.p.release(c)
	return err
}

// acquireRetrying acquires a connection for the call, retrying NotSent errors (whatever the
// classes the call's statements are retried on).
func (cl *call) acquireRetrying() (c *pgxpool.Conn, err error) {
	again := func() (err error) {
		c, err = cl.acquire()
		return err
	}
	err = cl.retry(retry.Safe, again(), again)
	return c, err
}

// acquire is one attempt's wait for a connection: until the call's bound ends.
func (cl *call) acquire() (_ *pgxpool.Conn, err error) {
	p := cl.p
	if p.closed.Load() {
		return nil, ErrClosed
	}
	p.stats.waiting.Add(1)
	defer p.stats.waiting.Add(-1)

	actx, b := cl.ctx, cl.bound()
	if b == boundBudget {
		w := p.budgets.wait(cl.ctx, cl.budget())
		defer w.stop()
		actx = w
	}
	var t0 time.Time
	if p.obs != nil {
		t0 = time.Now()
	}
	done := p.awaitConn(actx)
	failed := p.connectFailedAt.Load() // a connect this Acquire makes begins after it
	c, err := p.pgx.Acquire(actx)
	if done != nil {
		done.Add(1)
	}
	if p.obs != nil {
		defer func() { p.obs.Acquired(cl.ctx, AcquireEvent{Wait: time.Since(t0), Err: err}) }()
	}
	if err == nil {
		return c, nil
	}
	if p.closed.Load() {
		err = ErrClosed
		return nil, err
	}
	if actx.Err() == context.DeadlineExceeded && !errors.Is(cl.ctx.Err(), context.Canceled) {
		err = cl.timeout(b)
		return nil, err
	}
	if strings.HasPrefix(err.Error(), pgxpoolGaveUp) {
		err = &prePingsFailedError{last: p.lastConnErr.since(cl.start)}
		return nil, err
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		p.lastConnErr.set(err)
		p.connectFailed(cl.ctx, failed, err)
	}
	return nil, err
}

// timeout is the error of a call whose wait for a connection ran into b, counted.
func (cl *call) timeout(b bound) *TimeoutError {
	p := cl.p
	p.stats.acquireTimeouts.Add(1)
	s := p.pgx.Stat()
	te := &TimeoutError{
		Waited:  time.Since(cl.start),
		Bound:   p.budgetText,
		Total:   int(s.TotalConns()),
		Idle:    int(s.IdleConns()),
		InUse:   int(s.AcquiredConns()),
		Waiting: int(p.stats.waiting.Load()),
		Max:     p.cfg.MaxConns(),
		LastErr: p.lastConnErr.since(cl.start), // a failure before this call began is not why it waited
	}
	if b == boundDeadline {
		te.Bound = "the caller's deadline"
	}
	return te
}

// heldConn is a pooled connection given back once, by whichever of its holder's ends comes
// first: the rows read to the end or closed, a transaction's Commit or Rollback, a batch's
// Close or resend, a lost COMMIT about to be looked up (so that a full pool has a slot for the
// lookup), the end of a Tx attempt.
type heldConn struct {
	p    *Pool
	conn *pgxpool.Conn // nil once given back, or for rows of a batch, which have none of their own
}

func (h *heldConn) release() {
	if h.conn != nil {
		h.p.release(h.conn)
		h.conn = nil
	}
}
