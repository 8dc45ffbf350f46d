package retry

import (
	"context"
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
//	| the first attempt failed with a class not in RetryOn       | that error, unchanged          |
//	| a later attempt failed with a class not in RetryOn         | *Error                         |
//	| MaxAttempts or MaxElapsed reached                          | *Error                         |
//	| ctx ended, or its deadline comes before the next wait ends | *Error                         |
//
// An *Error holds the number of attempts and the class of the last error,
// and wraps the last error, so errors.Is and errors.As see through it.
//
// fn must get its connection inside, on every attempt (acquire it from a
// pool, or connect): a *pgx.Conn that has lost its connection refuses every
// later statement with pgconn's "conn closed", which is [NotSent] (nothing
// was sent) and so would be retried in vain until the policy gives up.
func Do(ctx context.Context, p Policy, fn func(context.Context) error) error {
	_, err := doValue(ctx, p, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx)
	}, rand.Int64N)
	return err
}

// DoValue is [Do] for a function that returns a value. It returns the value
// of the successful attempt; when it returns an error the value is T's zero
// value.
func DoValue[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error)) (T, error) {
	return doValue(ctx, p, fn, rand.Int64N)
}

// doValue is DoValue with the source of randomness as a parameter, so that
// tests can fix the jitter.
func doValue[T any](ctx context.Context, p Policy, fn func(context.Context) (T, error), rnd func(int64) int64) (T, error) {
	var zero T
	if err := p.Validate(); err != nil {
		return zero, err
	}
	p = p.withDefaults()
	if err := ctx.Err(); err != nil {
		return zero, err
	}

	b := newBackOff(p, rnd)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		v, err := fn(ctx)
		if err == nil {
			return v, nil
		}
		class := Classify(err)
		if !p.RetryOn.Has(class) {
			if attempt == 1 {
				return zero, err
			}
			return zero, &Error{Attempts: attempt, Class: class, Err: err}
		}
		giveUp := &Error{Attempts: attempt, Class: class, Err: err}
		if ctx.Err() != nil {
			return zero, giveUp
		}
		delay := b.NextBackOff()
		if delay == backoff.Stop {
			return zero, giveUp // MaxAttempts
		}
		if p.MaxElapsed > 0 && time.Since(start)+delay > p.MaxElapsed {
			return zero, giveUp
		}
		if deadline, ok := ctx.Deadline(); ok && !time.Now().Add(delay).Before(deadline) {
			return zero, giveUp
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, class, delay)
		}
		if !sleep(ctx, delay) {
			return zero, giveUp
		}
	}
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
