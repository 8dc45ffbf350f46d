package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Do calls fn until it succeeds, retrying failures whose [Class] is in
// p.RetryOn with exponential backoff and full jitter (see [Policy]). It is
// safe for concurrent use with the same Policy; each call keeps its own
// backoff state.
//
// ctx bounds everything: Do checks it before each attempt and passes it to
// fn, waits between attempts in a select on ctx.Done(), and does not start a
// wait that would end at or after ctx's deadline, since the next attempt
// would have no time left to run.
//
// The result:
//
//	| what happened                                              | Do returns                     |
//	|------------------------------------------------------------|--------------------------------|
//	| an attempt succeeded                                       | nil                            |
//	| p is invalid                                               | *PolicyError; fn is not called |
//	| ctx was done before the first attempt                      | ctx.Err(); fn is not called    |
//	| an attempt returned Stop(err)                              | err, unchanged                 |
//	| an attempt returned an *Error (a nested Do gave up)        | that *Error, unchanged         |
//	| the first attempt failed with a class not in RetryOn       | that error, unchanged          |
//	| a later attempt failed with a class not in RetryOn         | *Error                         |
//	| MaxAttempts or MaxElapsed reached                          | *Error                         |
//	| ctx ended, or its deadline comes before the next wait ends | *Error                         |
//
// An *Error holds the number of attempts and the class of the last error,
// and wraps the last error, so errors.Is and errors.As see through it. A
// nested Do that gave up ends the outer one too, so that retries do not
// multiply.
//
// fn must get its connection inside, on every attempt (acquire it from a
// pool, or connect): a *pgx.Conn that has lost its connection refuses every
// later statement with pgconn's "conn closed", which is [NotSent] (nothing
// was sent) and so would be retried in vain until the policy gives up.
func Do(ctx context.Context, p Policy, fn func(context.Context) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	return loop(ctx, p, start, fn(ctx), fn, rand.Int64N)
}

// Continue is [Do] for a caller that has already made the first attempt
// itself: it began at start and returned err. Continue applies to err the
// rules Do applies after every attempt, calls fn for the attempts that
// follow, and returns what Do would have returned. MaxElapsed counts from
// start. Continue(ctx, p, start, nil, fn) is nil and calls nothing.
//
// It lets a caller keep its first attempt free of closures and of the
// policy's bookkeeping, which matters on a hot path where nearly every
// first attempt succeeds.
func Continue(ctx context.Context, p Policy, start time.Time, err error, fn func(context.Context) error) error {
	if err == nil {
		return nil
	}
	if perr := p.Validate(); perr != nil {
		return perr
	}
	return loop(ctx, p, start, err, fn, rand.Int64N)
}

// DoValue is [Do] for a function that returns a value. It returns the value
// of the successful attempt; when it returns an error the value is T's zero
// value.
func DoValue[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error)) (T, error) {
	return doValue(ctx, p, fn, rand.Int64N)
}

// doValue is DoValue with the source of jitter as a parameter, so that
// tests can fix it.
func doValue[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error), rnd func(int64) int64) (T, error) {
	var zero, v T
	if err := p.Validate(); err != nil {
		return zero, err
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	attempt := func(ctx context.Context) (err error) {
		v, err = fn(ctx)
		return err
	}
	start := time.Now()
	if err := loop(ctx, p, start, attempt(ctx), attempt, rnd); err != nil {
		return zero, err
	}
	return v, nil
}

// Stop marks err as final: an attempt that returns Stop(err) ends [Do] or
// [Continue] at once, and they return err itself, whatever its class. Use it
// for an outcome that must reach the caller as it is, such as a commit
// whose result is unknown. Stop(nil) is nil.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

// stopError is an error marked by Stop. It never leaves this package.
type stopError struct{ err error }

func (s *stopError) Error() string { return s.err.Error() }
func (s *stopError) Unwrap() error { return s.err }

// loop owns every stop condition. err is the error of the first attempt,
// begun at start; rnd is the source of jitter, a parameter so that tests can
// fix it.
func loop(ctx context.Context, p Policy, start time.Time, err error, fn func(context.Context) error, rnd func(int64) int64) error {
	p = p.withDefaults()
	var b backoff.BackOff
	for attempt := 1; ; attempt++ {
		class, final, done := settled(err, attempt, p.RetryOn)
		if done {
			return final
		}
		if b == nil {
			b = newBackOff(p, rnd)
		}
		delay, limit := nextWait(ctx, p, b, start)
		if limit != NoLimit {
			return &Error{Attempts: attempt, Class: class, Err: err, Bound: limit.bound(p), Limit: limit}
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, class, delay)
		}
		if !sleep(ctx, delay) {
			return &Error{Attempts: attempt, Class: class, Err: err, Bound: LimitContext.bound(p), Limit: LimitContext}
		}
		err = fn(ctx)
	}
}

// settled reports whether attempt, which returned err, ends the loop, and
// with what: success, a Stop, a nested *Error, or a class not in on. When
// the loop goes on, class is err's class.
func settled(err error, attempt int, on Classes) (class Class, final error, done bool) {
	if err == nil {
		return Permanent, nil, true
	}
	var stop *stopError
	if errors.As(err, &stop) {
		return Permanent, stop.err, true
	}
	var nested *Error
	if errors.As(err, &nested) {
		return nested.Class, err, true
	}
	class = Classify(err)
	switch {
	case on.Has(class):
		return class, nil, false
	case attempt == 1:
		return class, err, true
	}
	return class, &Error{Attempts: attempt, Class: class, Err: err}, true
}

// nextWait returns the wait before the next attempt, or the limit that
// forbids one: the context (done, or its deadline before the wait ends),
// MaxAttempts, or MaxElapsed counted from start.
func nextWait(ctx context.Context, p Policy, b backoff.BackOff, start time.Time) (time.Duration, Limit) {
	if ctx.Err() != nil {
		return 0, LimitContext
	}
	delay := b.NextBackOff()
	switch {
	case delay == backoff.Stop:
		return 0, LimitAttempts
	case p.MaxElapsed > 0 && time.Since(start)+delay > p.MaxElapsed:
		return 0, LimitElapsed
	}
	if deadline, ok := ctx.Deadline(); ok && !time.Now().Add(delay).Before(deadline) {
		return 0, LimitContext
	}
	return delay, NoLimit
}

// sleep waits for d or until ctx is done, and reports whether d passed with
// ctx still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return ctx.Err() == nil
	}
}
