package otelpool

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// Option configures [NewObserver] and [Register].
type Option func(*settings)

type settings struct {
	poolName string
}

// WithPoolName sets the db.client.connection.pool.name attribute: a name unique within the
// application. Give the observer and the registration of one pool the same name. Default
// [DefaultPoolName].
func WithPoolName(name string) Option { return func(s *settings) { s.poolName = name } }

func newSettings(opts []Option) settings {
	s := settings{poolName: DefaultPoolName}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(ScopeName)
}

// Observer is a [pool.Observer] that records the pool's events as OpenTelemetry metrics and
// each retry as an event on the caller's span. Give it to [pool.WithObserver]. It is safe for
// concurrent use, and its methods do not block.
type Observer struct {
	wait    metric.Float64Histogram
	retries metric.Int64Counter
	pings   metric.Int64Counter
	closed  metric.Int64Counter
	commits metric.Int64Counter

	pool      metric.MeasurementOption            // the pool name alone
	waitErr   map[string]metric.MeasurementOption // by error.type
	retryOpts [4]metric.MeasurementOption         // by retry.Class
	sets      cache                               // close reasons and commit outcomes
	poolAttr  attribute.KeyValue
}

var _ pool.Observer = (*Observer)(nil)

// NewObserver returns an Observer whose instruments come from mp (the global MeterProvider
// when mp is nil). See the package documentation for the metrics and the span event.
func NewObserver(mp metric.MeterProvider, opts ...Option) (*Observer, error) {
	s := newSettings(opts)
	m := meter(mp)
	o := &Observer{poolAttr: poolNameKey.String(s.poolName)}
	var errs [5]error
	o.wait, errs[0] = m.Float64Histogram("db.client.connection.wait_time", metric.WithUnit("s"),
		metric.WithDescription("The time it took to obtain an open connection from the pool."),
		metric.WithExplicitBucketBoundaries(waitBuckets...))
	o.retries, errs[1] = m.Int64Counter("pgsteady.pool.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Calls run again after a failure, by error class."))
	o.pings, errs[2] = m.Int64Counter("pgsteady.pool.ping.failures", metric.WithUnit("{ping}"),
		metric.WithDescription("Pings of idle connections that failed: pre-pings and background keepalives."))
	o.closed, errs[3] = m.Int64Counter("pgsteady.pool.connection.closed", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections the pool closed, by reason."))
	o.commits, errs[4] = m.Int64Counter("pgsteady.pool.commits", metric.WithUnit("{commit}"),
		metric.WithDescription("Transaction COMMITs, by outcome: ok, rolled-back, ambiguous, resolved-committed, resolved-aborted."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("otelpool: creating instruments: %w", err)
	}
	o.pool = metric.WithAttributeSet(attribute.NewSet(o.poolAttr))
	o.waitErr = map[string]metric.MeasurementOption{}
	for _, t := range []string{"timeout", "canceled", "closed", "_OTHER"} {
		o.waitErr[t] = metric.WithAttributeSet(attribute.NewSet(o.poolAttr, errorTypeKey.String(t)))
	}
	for c := range o.retryOpts {
		o.retryOpts[c] = metric.WithAttributeSet(attribute.NewSet(o.poolAttr, retryClassKey.String(retry.Class(c).String())))
	}
	o.sets.init(o.poolAttr,
		[]attribute.KeyValue{
			closeReasonKey.String(pool.CloseBroken), closeReasonKey.String(pool.ClosePingFailed),
			closeReasonKey.String(pool.CloseStale), closeReasonKey.String(pool.CloseOverflow),
			closeReasonKey.String(pool.CloseAged),
			commitKey.String(pool.CommitOK), commitKey.String(pool.CommitRolledBack),
			commitKey.String(pool.CommitAmbiguous), commitKey.String(pool.CommitResolvedCommitted),
			commitKey.String(pool.CommitResolvedAborted),
		})
	return o, nil
}

// Acquired records the wait in db.client.connection.wait_time.
func (o *Observer) Acquired(ctx context.Context, wait time.Duration, err error) {
	opt := o.pool
	switch {
	case err == nil:
	case errors.Is(err, pool.ErrPoolTimeout):
		opt = o.waitErr["timeout"]
	case errors.Is(err, context.Canceled):
		opt = o.waitErr["canceled"]
	case errors.Is(err, pool.ErrClosed):
		opt = o.waitErr["closed"]
	default:
		opt = o.waitErr["_OTHER"]
	}
	o.wait.Record(ctx, wait.Seconds(), opt)
}

// Retrying counts the retry in pgsteady.pool.retries and, when the span in ctx is recording,
// adds a "pgsteady.retry" event to it.
func (o *Observer) Retrying(ctx context.Context, attempt int, class retry.Class, err error, delay time.Duration) {
	if int(class) >= 0 && int(class) < len(o.retryOpts) {
		o.retries.Add(ctx, 1, o.retryOpts[class])
	} else {
		o.retries.Add(ctx, 1, metric.WithAttributes(o.poolAttr, retryClassKey.String(class.String())))
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		retryAttemptKey.Int(attempt),
		retryClassKey.String(class.String()),
		retryDelayKey.Float64(delay.Seconds()),
	}
	if err != nil {
		attrs = append(attrs, errorTypeKey.String(errorType(err)), errorMsgKey.String(err.Error()))
	}
	span.AddEvent(RetryEvent, trace.WithAttributes(attrs...))
}

// PingFailed counts the failed ping in pgsteady.pool.ping.failures.
func (o *Observer) PingFailed(ctx context.Context, _ time.Duration, _ error) {
	o.pings.Add(ctx, 1, o.pool)
}

// ConnClosed counts the closed connection in pgsteady.pool.connection.closed, by reason.
func (o *Observer) ConnClosed(reason string) {
	o.closed.Add(context.Background(), 1, o.sets.get(closeReasonKey.String(reason)))
}

// Committed counts the COMMIT in pgsteady.pool.commits, by outcome.
func (o *Observer) Committed(ctx context.Context, outcome string) {
	o.commits.Add(ctx, 1, o.sets.get(commitKey.String(outcome)))
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
