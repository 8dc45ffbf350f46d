package pool

import (
	"context"
	"fmt"
	"time"

	"github.com/pgsteady/pgsteady/retry"
)

// Observer receives the pool's events, for metrics and traces; package
// [github.com/pgsteady/pgsteady/pool/otelpool] implements it with OpenTelemetry. An Observer
// embeds [BaseObserver] and implements any of the event interfaces, each optional, as pgx's
// tracers are: [AcquireObserver], [RetryObserver], [PingObserver], [CloseObserver] and
// [CommitObserver]. The pool calls only the methods an observer has, so an event added later
// breaks no observer, and a field added to an event struct breaks no observer either.
//
// The pool calls the methods synchronously, on the goroutine where the event happens, with
// the caller's ctx where there is one (so a tracer finds the caller's span) and
// context.Background() where there is none: they must be quick, must not block, and must be
// safe for concurrent use. Set one with [WithObserver].
//
//	type retryLog struct{ pool.BaseObserver }
//
//	func (retryLog) Retrying(ctx context.Context, e pool.RetryEvent) {
//		slog.InfoContext(ctx, "retrying", "class", e.Class, "attempt", e.Attempt)
//	}
type Observer interface {
	observer() // supplied by BaseObserver
}

// BaseObserver makes a type an [Observer]; embed it. It observes nothing: the pool sends an
// observer only the events of the interfaces it implements.
type BaseObserver struct{}

func (BaseObserver) observer() {}

// AcquireObserver is an [Observer] told of each attempt to get a connection.
type AcquireObserver interface {
	Observer
	Acquired(ctx context.Context, e AcquireEvent)
}

// AcquireEvent is one attempt to get a connection, as [AcquireObserver] receives it.
type AcquireEvent struct {
	Wait time.Duration // how long the attempt waited
	Err  error         // nil on success, a *TimeoutError when a bound ran out, or the connection error
}

// RetryObserver is an [Observer] told of each retry, before its delay.
type RetryObserver interface {
	Observer
	Retrying(ctx context.Context, e RetryEvent)
}

// RetryEvent is a call about to run again, as [RetryObserver] receives it.
type RetryEvent struct {
	Attempt int           // the attempt that failed, from 1
	Class   retry.Class   // Err's class
	Err     error         // why the attempt failed
	Delay   time.Duration // how long the call waits before the next attempt
}

// PingObserver is an [Observer] told of each failed pre-ping of an idle connection (a hedged
// one once settled in the background, when it found no answer within PingTimeout).
type PingObserver interface {
	Observer
	PingFailed(ctx context.Context, e PingEvent)
}

// PingEvent is a failed ping, as [PingObserver] receives it.
type PingEvent struct {
	Idle time.Duration // how long the connection had been idle
	Err  error         // the ping's error
}

// CloseObserver is an [Observer] told of each connection the pool closes.
type CloseObserver interface {
	Observer
	ConnClosed(ctx context.Context, e CloseEvent)
}

// CloseEvent is a connection the pool closed, as [CloseObserver] receives it.
type CloseEvent struct {
	Reason CloseReason
}

// CommitObserver is an [Observer] told how each [Pool.Tx] COMMIT ended.
type CommitObserver interface {
	Observer
	Committed(ctx context.Context, e CommitEvent)
}

// CommitEvent is a COMMIT's end, as [CommitObserver] receives it.
type CommitEvent struct {
	Outcome CommitOutcome
}

// CloseReason says why the pool closed a connection, in [CloseEvent] and in the logs.
type CloseReason string

// The reasons, all listed by [CloseReasons].
const (
	CloseBroken     CloseReason = "broken"      // it failed: the connection was lost or the server ended it
	ClosePingFailed CloseReason = "ping-failed" // its pre-ping failed
	CloseStale      CloseReason = "stale"       // idle past the idle horizon, or longer than one whose ping failed
	CloseOverflow   CloseReason = "overflow"    // beyond Size and idle OverflowIdleTimeout (with 0: given back while Size were idle)
	CloseAged       CloseReason = "aged"        // recycled for age or idleness, or closed with the pool
)

// CloseReasons returns every [CloseReason] the pool gives, in a fixed order (for metrics that
// declare their attribute values up front).
func CloseReasons() []CloseReason {
	return []CloseReason{CloseBroken, ClosePingFailed, CloseStale, CloseOverflow, CloseAged}
}

// CommitOutcome says how a [Pool.Tx] COMMIT ended, in [CommitEvent].
type CommitOutcome string

// The outcomes, all listed by [CommitOutcomes].
const (
	CommitOK         CommitOutcome = "ok"          // committed
	CommitRolledBack CommitOutcome = "rolled-back" // the server answered that it rolled back
	CommitAmbiguous  CommitOutcome = "ambiguous"   // the answer was lost and could not be resolved: *AmbiguousCommitError

	CommitResolvedCommitted CommitOutcome = "resolved-committed" // the answer was lost; the server says it committed
	CommitResolvedAborted   CommitOutcome = "resolved-aborted"   // the answer was lost; the server says it rolled back (fn runs again)
)

// CommitOutcomes returns every [CommitOutcome], in a fixed order (for metrics that declare
// their attribute values up front).
func CommitOutcomes() []CommitOutcome {
	return []CommitOutcome{CommitOK, CommitRolledBack, CommitAmbiguous, CommitResolvedCommitted, CommitResolvedAborted}
}

// WithObserver sends the pool's events to o (see [Observer]). Several WithObserver options
// add up: each observer gets the events it observes, in the order the options were given.
// [New] refuses an observer that implements none of the event interfaces (a method whose
// signature does not match is the usual cause).
func WithObserver(o Observer) Option {
	return func(opts *options) {
		if o != nil {
			opts.observers = append(opts.observers, o)
		}
	}
}

// observers sends each event to the observers that implement its interface, in order.
type observers struct {
	acquire []AcquireObserver
	retry   []RetryObserver
	ping    []PingObserver
	close   []CloseObserver
	commit  []CommitObserver
}

// observerOf sorts obs by the events they observe. It returns nil when there are none, and
// an error naming an observer that observes nothing.
func observerOf(obs []Observer) (*observers, error) {
	if len(obs) == 0 {
		return nil, nil
	}
	var all observers
	for _, o := range obs {
		n := add(&all.acquire, o) + add(&all.retry, o) + add(&all.ping, o) + add(&all.close, o) + add(&all.commit, o)
		if n == 0 {
			return nil, fmt.Errorf("pool: WithObserver got a %T, which implements none of AcquireObserver, RetryObserver, PingObserver, CloseObserver, CommitObserver", o)
		}
	}
	return &all, nil
}

// add appends o to to if o implements O, and says how many it added.
func add[O Observer](to *[]O, o Observer) int {
	x, ok := o.(O)
	if ok {
		*to = append(*to, x)
		return 1
	}
	return 0
}

// each sends e to every observer of to through event.
func each[O Observer, E any](to []O, event func(O, context.Context, E), ctx context.Context, e E) {
	for _, o := range to {
		event(o, ctx, e)
	}
}

func (obs *observers) Acquired(ctx context.Context, e AcquireEvent) {
	each(obs.acquire, AcquireObserver.Acquired, ctx, e)
}

func (obs *observers) Retrying(ctx context.Context, e RetryEvent) {
	each(obs.retry, RetryObserver.Retrying, ctx, e)
}

func (obs *observers) PingFailed(ctx context.Context, e PingEvent) {
	each(obs.ping, PingObserver.PingFailed, ctx, e)
}

func (obs *observers) ConnClosed(ctx context.Context, e CloseEvent) {
	each(obs.close, CloseObserver.ConnClosed, ctx, e)
}

func (obs *observers) Committed(ctx context.Context, e CommitEvent) {
	each(obs.commit, CommitObserver.Committed, ctx, e)
}
