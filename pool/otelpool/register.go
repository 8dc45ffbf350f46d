package otelpool

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgsteady/pgsteady/pool"
)

// Register publishes p's [pool.Pool.Stats] through instruments from o's MeterProvider, under
// o's pool name: the connections by state, the limits, the callers waiting, the acquire
// timeouts, the connections opened and the callers that waited a whole PingTimeout for a
// pre-ping (see the package documentation). The values are read
// when the SDK collects; Unregister the returned registration before dropping the pool, or
// with it. Register works whether or not o was given to p's [pool.WithObserver]: use both for
// all the metrics.
func (o *Observer) Register(p *pool.Pool) (metric.Registration, error) {
	if p == nil {
		return nil, errors.New("otelpool: Register needs a pool, got nil")
	}
	m := o.mp.Meter(ScopeName)
	var (
		errs                              [7]error
		count, maxConns, idleMax, pending metric.Int64ObservableUpDownCounter
		timeouts, opened, pingWaits       metric.Int64ObservableCounter
	)
	count, errs[0] = connectionCount(m)
	maxConns, errs[1] = m.Int64ObservableUpDownCounter("db.client.connection.max", metric.WithUnit("{connection}"),
		metric.WithDescription("The maximum number of open connections allowed (Size + Overflow)."))
	idleMax, errs[2] = m.Int64ObservableUpDownCounter("db.client.connection.idle.max", metric.WithUnit("{connection}"),
		metric.WithDescription("The maximum number of idle open connections allowed (Size)."))
	pending, errs[3] = m.Int64ObservableUpDownCounter("db.client.connection.pending_requests", metric.WithUnit("{request}"),
		metric.WithDescription("The number of current pending requests for an open connection."))
	timeouts, errs[4] = m.Int64ObservableCounter("db.client.connection.timeouts", metric.WithUnit("{timeout}"),
		metric.WithDescription("The number of connection timeouts that have occurred trying to obtain a connection from the pool."))
	opened, errs[5] = m.Int64ObservableCounter("pgsteady.pool.connection.opened", metric.WithUnit("{connection}"),
		metric.WithDescription("Connections opened."))
	pingWaits, errs[6] = m.Int64ObservableCounter("pgsteady.pool.ping.timeout_waits", metric.WithUnit("{ping}"),
		metric.WithDescription("Pre-pings whose caller waited the whole PingTimeout though the hedge delay was shorter: the pool could not hedge them."))
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("otelpool: creating instruments: %w", err)
	}
	name := o.name
	all := metric.WithAttributeSet(attribute.NewSet(name))
	idle := metric.WithAttributeSet(attribute.NewSet(name, stateKey.String("idle")))
	used := metric.WithAttributeSet(attribute.NewSet(name, stateKey.String("used")))
	reg, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		st := p.Stats()
		ob.ObserveInt64(count, int64(st.IdleConns), idle)
		ob.ObserveInt64(count, int64(st.AcquiredConns), used)
		ob.ObserveInt64(maxConns, int64(st.MaxConns), all)
		ob.ObserveInt64(idleMax, int64(st.Size), all)
		ob.ObserveInt64(pending, int64(st.Waiting), all)
		ob.ObserveInt64(timeouts, st.AcquireTimeouts, all)
		ob.ObserveInt64(opened, st.Opened, all)
		ob.ObserveInt64(pingWaits, st.PingTimeoutWaits, all)
		return nil
	}, count, maxConns, idleMax, pending, timeouts, opened, pingWaits)
	if err != nil {
		return nil, fmt.Errorf("otelpool: registering the stats callback: %w", err)
	}
	return reg, nil
}

// connectionCount creates db.client.connection.count, which both registrations share.
func connectionCount(m metric.Meter) (metric.Int64ObservableUpDownCounter, error) {
	return m.Int64ObservableUpDownCounter("db.client.connection.count", metric.WithUnit("{connection}"),
		metric.WithDescription("The number of connections that are currently in the state described by the state attribute."))
}
