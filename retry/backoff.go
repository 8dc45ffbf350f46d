package retry

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// fullJitter is a backoff.BackOff that draws each wait uniformly from
// [0, envelope], where the envelope comes from a backoff.ExponentialBackOff
// without randomization ("full jitter"). backoff's own randomization keeps
// every wait within a factor of the envelope, so retries of callers that
// failed together stay bunched; full jitter spreads them over the whole
// interval.
//
// Like every backoff/v4 BackOff it is not safe for concurrent use: Do makes
// a new one per call.
type fullJitter struct {
	envelope *backoff.ExponentialBackOff
	// rnd returns a uniform random integer in [0, n) for n > 0.
	rnd func(n int64) int64
}

// newBackOff returns the backoff for one call of Do under p, whose zero
// fields must already hold their defaults. It returns backoff.Stop once
// p.MaxAttempts calls have been made; Do itself enforces MaxElapsed and the
// context's deadline, against the wait actually drawn rather than against
// the envelope.
func newBackOff(p Policy, rnd func(n int64) int64) backoff.BackOff {
	env := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(p.Initial),
		backoff.WithRandomizationFactor(0),
		backoff.WithMultiplier(p.Multiplier),
		backoff.WithMaxInterval(p.MaxInterval),
		backoff.WithMaxElapsedTime(0),
	)
	var b backoff.BackOff = &fullJitter{envelope: env, rnd: rnd}
	if p.MaxAttempts > 0 {
		// MaxAttempts counts calls; backoff counts the retries between them.
		b = backoff.WithMaxRetries(b, uint64(p.MaxAttempts-1))
	}
	return b
}

// NextBackOff returns a wait in [0, envelope] and grows the envelope, or
// backoff.Stop.
func (j *fullJitter) NextBackOff() time.Duration {
	env := j.envelope.NextBackOff()
	switch {
	case env == backoff.Stop:
		return backoff.Stop
	case env <= 0:
		return 0
	case env == math.MaxInt64:
		return time.Duration(j.rnd(int64(env)))
	}
	return time.Duration(j.rnd(int64(env) + 1))
}

// Reset restarts the envelope at its initial interval.
func (j *fullJitter) Reset() { j.envelope.Reset() }
