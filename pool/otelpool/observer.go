package otelpool

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// ScopeName is the instrumentation scope of the meter this package uses.
const ScopeName = "github.com/pgsteady/pgsteady/pool/otelpool"

// DefaultPoolName is the db.client.connection.pool.name of a pool given no [WithPoolName].
const DefaultPoolName = "pgsteady"

// RetryEvent is the name of the span event added for each retry.
const RetryEvent = "pgsteady.retry"

// The attribute keys this package sets (see the package documentation).
const (
	poolNameKey     = attribute.Key("db.client.connection.pool.name")
	stateKey        = attribute.Key("db.client.connection.state") // "idle" or "used"
	errorTypeKey    = attribute.Key("error.type")
	errorMsgKey     = attribute.Key("error.message")
	retryClassKey   = attribute.Key("pgsteady.retry.class")   // a retry.Class name
	retryAttemptKey = attribute.Key("pgsteady.retry.attempt") // the attempt that failed, from 1
	retryDelayKey   = attribute.Key("pgsteady.retry.delay")   // seconds before the next attempt
	closeReasonKey  = attribute.Key("pgsteady.connection.close_reason")
	commitKey       = attribute.Key("pgsteady.commit.outcome")
)

// waitBuckets are the wait_time histogram's advised bucket bounds, in seconds: an acquire
// takes microseconds when a connection is idle, milliseconds to open one, and up to the
// AcquireTimeout (30 s by default) when the pool is exhausted.
var waitBuckets = []float64{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Option configures [NewObserver].
type Option func(*settings)

type settings struct {
	poolName string
}

// WithPoolName sets the db.client.connection.pool.name attribute of every measurement the
// Observer and its registrations make: a name unique within the application. Default
// [DefaultPoolName].
func WithPoolName(name string) Option { return func(s *settings) { s.poolName = name } }

// Observer is a [pool.Observer] that records the pool's events as OpenTelemetry metrics and
// each retry as an event on the caller's span. Give it to [pool.WithObserver], and publish the
// pool's stats with [Observer.Register]: both carry the pool name given to [NewObserver]. It is
// safe for concurrent use, and its methods do not block.
type Observer struct {
	pool.BaseObserver

	mp      metric.MeterProvider
	name    attribute.KeyValue // db.client.connection.pool.name
	wait    metric.Float64Histogram
	retries metric.Int64Counter
	pings   metric.Int64Counter
	closed  metric.Int64Counter
	commits metric.Int64Counter

	pool      metric.MeasurementOption            // the pool name alone
	waitErr   map[string]metric.MeasurementOption // by error.type
	retryOpts [4]metric.MeasurementOption         // by retry.Class
	sets      cache                               // close reasons and commit outcomes
}

var (
	_ pool.AcquireObserver = (*Observer)(nil)
	_ pool.RetryObserver   = (*Observer)(nil)
	_ pool.PingObserver    = (*Observer)(nil)
	_ pool.CloseObserver   = (*Observer)(nil)
	_ pool.CommitObserver  = (*Observer)(nil)
)

// NewObserver returns an Observer whose instruments come from mp (the global MeterProvider
// when mp is nil). See the package documentation for the metrics and the span event.
func NewObserver(mp metric.MeterProvider, opts ...Option) (*Observer, error) {
	s := settings{poolName: DefaultPoolName}
	for _, opt := range opts {
		opt(&s)
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(ScopeName)
	o := &Observer{mp: mp, name: poolNameKey.String(s.poolName)}
	var errs [5]error
	o.wait, errs[0] = m.Float64Histogram("db.client.connection.wait_time", metric.WithUnit("s"),
		metric.WithDescription("The time it took to obtain an open connection from the pool."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	o.retries, errs[1] = m.Int64Counter("pgsteady.pool.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Calls run again after a failure, by error class."))
	o.pings, errs[2] = m.Int64Counter("pgsteady.pool.ping.failures", metric.WithUnit("{ping}"),
		metric.WithDescription("Pre-pings of idle connections that failed (hedged ones once settled)."))
	o.closed, errs[3] = m.Int64Counter("pgsteady.pool.connection.closed", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections the pool closed, by reason."))
	o.commits, errs[4] = m.Int64Counter("pgsteady.pool.commits", metric.WithUnit("{commit}"),
		metric.WithDescription("Transaction COMMITs, by outcome."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("otelpool: creating instruments: %w", err)
	}
	o.pool = metric.WithAttributeSet(attribute.NewSet(o.name))
	o.waitErr = map[string]metric.MeasurementOption{}
	for _, t := range []string{"timeout", "canceled", "closed", "_OTHER"} {
		o.waitErr[t] = metric.WithAttributeSet(attribute.NewSet(o.name, errorTypeKey.String(t)))
	}
	for c := range o.retryOpts {
		o.retryOpts[c] = metric.WithAttributeSet(attribute.NewSet(o.name, retryClassKey.String(retry.Class(c).String())))
	}
	var known []attribute.KeyValue
	for _, r := range pool.CloseReasons() {
		known = append(known, closeReasonKey.String(string(r)))
	}
	for _, c := range pool.CommitOutcomes() {
		known = append(known, commitKey.String(string(c)))
	}
	o.sets.init(o.name, known)
	return o, nil
}

// Acquired records the wait in db.client.connection.wait_time.
func (o *Observer) Acquired(ctx context.Context, e pool.AcquireEvent) {
	opt := o.pool
	switch {
	case e.Err == nil:
	case errors.Is(e.Err, pool.ErrPoolTimeout):
		opt = o.waitErr["timeout"]
	case errors.Is(e.Err, context.Canceled):
		opt = o.waitErr["canceled"]
	case errors.Is(e.Err, pool.ErrClosed):
		opt = o.waitErr["closed"]
	default:
		opt = o.waitErr["_OTHER"]
	}
	o.wait.Record(ctx, e.Wait.Seconds(), opt)
}

// Retrying counts the retry in pgsteady.pool.retries and, when the span in ctx is recording,
// adds a "pgsteady.retry" event to it.
func (o *Observer) Retrying(ctx context.Context, e pool.RetryEvent) {
	if int(e.Class) >= 0 && int(e.Class) < len(o.retryOpts) {
		o.retries.Add(ctx, 1, o.retryOpts[e.Class])
	} else {
		o.retries.Add(ctx, 1, metric.WithAttributes(o.name, retryClassKey.String(e.Class.String())))
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		retryAttemptKey.Int(e.Attempt),
		retryClassKey.String(e.Class.String()),
		retryDelayKey.Float64(e.Delay.Seconds()),
	}
	if e.Err != nil {
		attrs = append(attrs, errorTypeKey.String(errorType(e.Err)), errorMsgKey.String(e.Err.Error()))
	}
	span.AddEvent(RetryEvent, trace.WithAttributes(attrs...))
}

// PingFailed counts the failed ping in pgsteady.pool.ping.failures.
func (o *Observer) PingFailed(ctx context.Context, _ pool.PingEvent) {
	o.pings.Add(ctx, 1, o.pool)
}

// ConnClosed counts the closed connection in pgsteady.pool.connection.closed, by reason.
func (o *Observer) ConnClosed(ctx context.Context, e pool.CloseEvent) {
	o.closed.Add(ctx, 1, o.sets.get(closeReasonKey.String(string(e.Reason))))
}

// Committed counts the COMMIT in pgsteady.pool.commits, by outcome.
func (o *Observer) Committed(ctx context.Context, e pool.CommitEvent) {
	o.commits.Add(ctx, 1, o.sets.get(commitKey.String(string(e.Outcome))))
}

// errorType is the error.type of err: the SQLSTATE of a server error, else err's Go type.
func errorType(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return fmt.Sprintf("%T", err)
}

// cache holds the measurement options of known attribute values, built once; others are built
// on use.
type cache struct {
	pool attribute.KeyValue
	m    map[attribute.KeyValue]metric.MeasurementOption
}

func (c *cache) init(poolAttr attribute.KeyValue, known []attribute.KeyValue) {
	c.pool = poolAttr
	c.m = make(map[attribute.KeyValue]metric.MeasurementOption, len(known))
	for _, kv := range known {
		c.m[kv] = metric.WithAttributeSet(attribute.NewSet(poolAttr, kv))
	}
}

func (c *cache) get(kv attribute.KeyValue) metric.MeasurementOption {
	if opt, ok := c.m[kv]; ok {
		return opt
	}
	return metric.WithAttributes(c.pool, kv)
}
