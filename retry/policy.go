package retry

import (
	"math"
	"strconv"
	"time"
)

// Defaults of a [Policy]. Together they ride through the faults pgsteady is
// built for without making a caller wait long for a database that is really
// gone:
//
//   - a single killed backend or reset connection costs one retry of at most
//     DefaultInitial (25 ms; half that on average with full jitter);
//   - a server restart of 1-3 s is crossed in the doubling phase (25, 50, 100,
//     200, 400, 800 ms: about 1.6 s of envelope in six retries) and then at
//     most DefaultMaxInterval apart, so the first attempt after the server is
//     back comes within about a second (half a second on average);
//   - a Neon cold start (a few hundred milliseconds to a few seconds) and its
//     "Couldn't connect to compute node" answers fit well inside
//     DefaultMaxElapsed (15 s), which is also the upper end of the connect
//     timeout Neon recommends (10-15 s) and below the usual 30-60 s of HTTP
//     gateways, so the caller still gets an answer to send back;
//   - with no attempt limit (DefaultMaxAttempts 0) the elapsed-time limit and
//     the caller's context alone decide, whatever the latency of an attempt.
const (
	// DefaultInitial is the default [Policy.Initial]: 25 ms.
	DefaultInitial = 25 * time.Millisecond
	// DefaultMaxInterval is the default [Policy.MaxInterval]: 1 s.
	DefaultMaxInterval = time.Second
	// DefaultMultiplier is the default [Policy.Multiplier]: 2.
	DefaultMultiplier = 2.0
	// DefaultMaxElapsed is the default [Policy.MaxElapsed]: 15 s.
	DefaultMaxElapsed = 15 * time.Second
	// DefaultMaxAttempts is the default [Policy.MaxAttempts]: 0, no limit
	// on the number of attempts (MaxElapsed and the context still bound them).
	DefaultMaxAttempts = 0
)

// Policy says which failures [Do] retries, and how long it waits between
// attempts and in total. Get one from [DefaultPolicy] and change fields; a
// Policy is a plain value, safe to copy and to share between goroutines
// (each call of Do keeps its own backoff state).
//
// Waits grow exponentially with full jitter: before retry n (n = 1, 2, ...)
// the envelope is min(Initial × Multiplier^(n-1), MaxInterval), and the wait
// is drawn uniformly from [0, envelope]. Full jitter spreads the retries of
// many callers that failed together (all connections of a pool dropped by
// one restart) so they do not return in one burst.
//
// Zero values: Initial, MaxInterval and Multiplier take their defaults;
// MaxElapsed 0 and MaxAttempts 0 mean no limit of that kind, so a zero
// Policy retries [Safe] errors until the context ends. RetryOn zero means
// [Safe].
type Policy struct {
	// Initial is the envelope of the first wait: the first retry waits a
	// random time in [0, Initial]. Default DefaultInitial (25 ms); 0 means
	// the default. Must be >= 0.
	Initial time.Duration

	// MaxInterval caps the envelope of every wait. Default
	// DefaultMaxInterval (1 s); 0 means the default. Must be >= Initial.
	MaxInterval time.Duration

	// Multiplier is the growth of the envelope from one wait to the next.
	// Default DefaultMultiplier (2); 0 means the default. Must be a finite
	// number >= 1 (1 gives waits of constant envelope Initial).
	Multiplier float64

	// MaxElapsed bounds the time from the start of Do to the start of its
	// last attempt: Do does not begin a wait that would end later than
	// MaxElapsed after it was called. Default DefaultMaxElapsed (15 s);
	// 0 means no limit (the context still bounds Do). Must be >= 0.
	MaxElapsed time.Duration

	// MaxAttempts bounds the number of calls of the function, the first
	// included: 1 means no retry. Default DefaultMaxAttempts (0, no limit).
	// Must be >= 0.
	MaxAttempts int

	// RetryOn is the set of classes Do retries; errors of any other class
	// end Do at once. Zero means Safe. Use Idempotent only for work that
	// gives the same result when it runs twice, and Transaction only for a
	// function that runs a whole transaction. It may not contain
	// [Permanent]: a permanent error fails the same way again.
	RetryOn Classes

	// OnRetry, if not nil, is called before each wait, in the goroutine that
	// called Do, with the number of the attempt that just failed (1 for the
	// first), its error, the error's class and the wait that follows. It is
	// not called when Do gives up instead of waiting. Use it for logs and
	// metrics; it must not block, and if the Policy is shared it must be
	// safe for concurrent use.
	OnRetry func(attempt int, err error, class Class, delay time.Duration)
}

// DefaultPolicy returns the defaults: Initial 25 ms, MaxInterval 1 s,
// Multiplier 2, MaxElapsed 15 s, no attempt limit, RetryOn [Safe], no
// OnRetry hook. See the Default constants for why.
func DefaultPolicy() Policy {
	return Policy{
		Initial:     DefaultInitial,
		MaxInterval: DefaultMaxInterval,
		Multiplier:  DefaultMultiplier,
		MaxElapsed:  DefaultMaxElapsed,
		MaxAttempts: DefaultMaxAttempts,
		RetryOn:     Safe,
	}
}

// WithRetryOn returns a copy of p that retries the classes in s.
func (p Policy) WithRetryOn(s Classes) Policy {
	p.RetryOn = s
	return p
}

// Validate reports the first field of p that is out of range as a
// *[PolicyError] naming the field, the value and the limit, or nil.
// Zero values are valid (see [Policy]).
func (p Policy) Validate() error {
	if p.Initial < 0 {
		return &PolicyError{Field: "Initial", Value: p.Initial.String(), Limit: ">= 0"}
	}
	if p.MaxInterval < 0 {
		return &PolicyError{Field: "MaxInterval", Value: p.MaxInterval.String(), Limit: ">= 0"}
	}
	if p.Multiplier != 0 && !(p.Multiplier >= 1 && !math.IsInf(p.Multiplier, 1)) {
		return &PolicyError{
			Field: "Multiplier",
			Value: strconv.FormatFloat(p.Multiplier, 'g', -1, 64),
			Limit: "a finite number >= 1",
		}
	}
	if p.MaxElapsed < 0 {
		return &PolicyError{Field: "MaxElapsed", Value: p.MaxElapsed.String(), Limit: ">= 0"}
	}
	if p.MaxAttempts < 0 {
		return &PolicyError{Field: "MaxAttempts", Value: strconv.Itoa(p.MaxAttempts), Limit: ">= 0"}
	}
	if !p.RetryOn.valid() || p.RetryOn.Has(Permanent) {
		return &PolicyError{
			Field: "RetryOn",
			Value: p.RetryOn.String(),
			Limit: "a subset of " + Transaction.String(),
		}
	}
	eff := p.withDefaults()
	if eff.MaxInterval < eff.Initial {
		value := eff.MaxInterval.String()
		if p.MaxInterval == 0 {
			value = "0 (default " + value + ")"
		}
		return &PolicyError{
			Field: "MaxInterval",
			Value: value,
			Limit: ">= Initial (" + eff.Initial.String() + ")",
		}
	}
	return nil
}

// withDefaults returns p with its zero fields that have defaults filled in.
func (p Policy) withDefaults() Policy {
	if p.Initial == 0 {
		p.Initial = DefaultInitial
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = DefaultMaxInterval
	}
	if p.Multiplier == 0 {
		p.Multiplier = DefaultMultiplier
	}
	if p.RetryOn == 0 {
		p.RetryOn = Safe
	}
	return p
}
