package otelpool

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/pgsteady/pgsteady/pool"
)

// Attribute keys of a cluster's members.
const (
	memberKey = attribute.Key("server.address") // a member's host:port
	roleKey   = attribute.Key("pgsteady.cluster.role")
)

// RegisterCluster publishes c's [pool.Cluster.Stats] per member through o's MeterProvider, each
// with server.address (host:port) and pgsteady.cluster.role (primary, replica, detached,
// unknown): pgsteady.cluster.replay_lag (bytes of WAL a replica was behind the primary at the
// last check; not observed for the primary or an unknown lag), pgsteady.cluster.reads (reads
// served) and db.client.connection.count by state, as [Observer.Register] does for one pool.
// o's pool name is shared by all members (give o to them with
// pool.WithMemberOptions(pool.WithObserver(o))). Unregister the returned registration before
// dropping the cluster.
func (o *Observer) RegisterCluster(c *pool.Cluster) (metric.Registration, error) {
	if c == nil {
		return nil, errors.New("otelpool: RegisterCluster needs a cluster, got nil")
	}
	m := o.mp.Meter(ScopeName)
	var (
		errs       [3]error
		lag, count metric.Int64ObservableUpDownCounter
		reads      metric.Int64ObservableCounter
	)
	lag, errs[0] = m.Int64ObservableUpDownCounter("pgsteady.cluster.replay_lag", metric.WithUnit("By"),
		metric.WithDescription("Bytes of WAL a replica was behind the primary at the last check."))
	reads, errs[1] = m.Int64ObservableCounter("pgsteady.cluster.reads", metric.WithUnit("{read}"),
		metric.WithDescription("Reads a member served."))
	count, errs[2] = connectionCount(m)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("otelpool: creating instruments: %w", err)
	}
	name := o.name
	reg, err := m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		for _, ms := range c.Stats().Members {
			member := []attribute.KeyValue{name, memberKey.String(ms.Addr), roleKey.String(ms.Role)}
			all := metric.WithAttributes(member...)
			if ms.LagBytes >= 0 {
				ob.ObserveInt64(lag, ms.LagBytes, all)
			}
			ob.ObserveInt64(reads, ms.Reads, all)
			ob.ObserveInt64(count, int64(ms.Pool.IdleConns), metric.WithAttributes(append(member, stateKey.String("idle"))...))
			ob.ObserveInt64(count, int64(ms.Pool.AcquiredConns), metric.WithAttributes(append(member, stateKey.String("used"))...))
		}
		return nil
	}, lag, reads, count)
	if err != nil {
		return nil, fmt.Errorf("otelpool: registering the cluster stats callback: %w", err)
	}
	return reg, nil
}
