package pool

import (
	"context"
	"time"

	"github.com/pgsteady/pgsteady/retry"
)

// Observer receives the pool's events, for metrics and traces; package
// [github.com/pgsteady/pgsteady/pool/otelpool] implements it with OpenTelemetry. The pool calls
// its methods synchronously, on the goroutine where the event happens, with the caller's ctx
// where there is one (so a tracer finds the caller's span): they must be quick, must not
// block, and must be safe for concurrent use. Set one with [WithObserver].
type Observer interface {
	// Acquired reports one attempt to get a connection that ended after waiting wait: err is
	// nil on success, a *TimeoutError when a bound ran out, or the connection error.
	Acquired(ctx context.Context, wait time.Duration, err error)
	// Retrying reports that a call is about to run again after attempt failed with err, of
	// class, and that it waits delay first.
	Retrying(ctx context.Context, attempt int, class retry.Class, err error, delay time.Duration)
	// PingFailed reports a pre-ping, or a background keepalive ping, that failed on a
	// connection idle for idle.
	PingFailed(ctx context.Context, idle time.Duration, err error)
	// ConnClosed reports a connection the pool closed, and why (one of the Close* reasons).
	ConnClosed(reason string)
	// Committed reports how a [Pool.Tx] COMMIT ended: one of the Commit* outcomes.
	Committed(ctx context.Context, outcome string)
}

// Why the pool closed a connection, as [Observer.ConnClosed] and the logs say it.
const (
	CloseBroken     = "broken"      // it failed: the connection was lost or the server ended it
	ClosePingFailed = "ping-failed" // its pre-ping failed
	CloseStale      = "stale"       // idle past the idle horizon, or longer than one whose ping failed
	CloseOverflow   = "overflow"    // beyond Size and idle OverflowIdleTimeout (with 0: given back while Size were idle)
	CloseAged       = "aged"        // recycled for age or idleness, or closed with the pool
)

// How a Tx COMMIT ended, as [Observer.Committed] says it.
const (
	CommitOK         = "ok"          // committed
	CommitRolledBack = "rolled-back" // the server answered that it rolled back
	CommitAmbiguous  = "ambiguous"   // the answer was lost and could not be resolved: *AmbiguousCommitError

	CommitResolvedCommitted = "resolved-committed" // the answer was lost; the server says it committed
	CommitResolvedAborted   = "resolved-aborted"   // the answer was lost; the server says it rolled back (fn runs again)
)

// WithObserver sends the pool's events to o (see [Observer]). Several WithObserver options
// add up: each observer gets every event, in the order the options were given.
func WithObserver(o Observer) Option {
	return func(opts *options) {
		if o != nil {
			opts.observers = append(opts.observers, o)
		}
	}
}

// observers sends each event to every one of its observers, in order.
type observers []Observer

// observerOf returns nil, the one observer, or a fan-out to all of obs.
func observerOf(obs []Observer) Observer {
	switch len(obs) {
	case 0:
		return nil
	case 1:
		return obs[0]
	}
	return observers(obs)
}

func (obs observers) Acquired(ctx context.Context, wait time.Duration, err error) {
	for _, o := range obs {
		o.Acquired(ctx, wait, err)
	}
}

func (obs observers) Retrying(ctx context.Context, attempt int, class retry.Class, err error, delay time.Duration) {
	for _, o := range obs {
		o.Retrying(ctx, attempt, class, err, delay)
	}
}

func (obs observers) PingFailed(ctx context.Context, idle time.Duration, err error) {
	for _, o := range obs {
		o.PingFailed(ctx, idle, err)
	}
}

func (obs observers) ConnClosed(reason string) {
	for _, o := range obs {
		o.ConnClosed(reason)
	}
}

func (obs observers) Committed(ctx context.Context, outcome string) {
	for _, o := range obs {
		o.Committed(ctx, outcome)
	}
}
