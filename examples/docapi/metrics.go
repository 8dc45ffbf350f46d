package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
)

// poolName is the db.client.connection.pool.name of docapi's pool in its metrics.
const poolName = "docapi"

// metrics counts docapi's own events for /metrics. It is safe for concurrent use.
type metrics struct {
	mu       sync.Mutex
	requests map[int]int64    // by status code
	logins   map[string]int64 // by result: ok, failed, throttled, busy

	exposition http.Handler // serves /metrics (withTelemetry)
}

func newMetrics() *metrics {
	return &metrics{requests: map[int]int64{}, logins: map[string]int64{}}
}

func (m *metrics) request(status int) {
	m.mu.Lock()
	m.requests[status]++
	m.mu.Unlock()
}

func (m *metrics) login(result string) {
	m.mu.Lock()
	m.logins[result]++
	m.mu.Unlock()
}

// metricsHandler serves GET /metrics in the Prometheus exposition format: the pool's
// OpenTelemetry metrics (package otelpool) and docapi's request and login counts, through the
// OpenTelemetry Prometheus exporter (withTelemetry). Like /healthz it needs no token: it holds
// no user data, and scrapers rarely carry one.
func (s *server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	if s.metrics.exposition == nil {
		http.NotFound(w, r)
		return
	}
	s.metrics.exposition.ServeHTTP(w, r)
}

// telemetry is docapi's OpenTelemetry metrics pipeline: an SDK MeterProvider whose reader is
// the Prometheus exporter, the pool's observer and stats (package otelpool), and docapi's own
// request and login counts. Build it before the pool, register the pool once it exists, give it
// to newServer with withTelemetry, and close it last.
type telemetry struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
	observer *otelpool.Observer
	app      atomic.Pointer[metrics] // the server's counts, once withTelemetry has run
	regs     []metric.Registration
}

// newTelemetry builds the pipeline and docapi's own instruments (docapi.http.requests by code,
// docapi.logins by result; docapi_http_requests_total and docapi_logins_total in Prometheus).
func newTelemetry() (*telemetry, error) {
	t := &telemetry{registry: prometheus.NewRegistry()}
	exp, err := otelprom.New(otelprom.WithRegisterer(t.registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("metrics: prometheus exporter: %w", err)
	}
	t.provider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	if t.observer, err = otelpool.NewObserver(t.provider, otelpool.WithPoolName(poolName)); err != nil {
		return nil, err
	}
	m := t.provider.Meter("github.com/pgsteady/pgsteady/examples/docapi")
	requests, err1 := m.Int64ObservableCounter("docapi.http.requests", metric.WithUnit("{request}"),
		metric.WithDescription("HTTP requests answered, by status code."))
	logins, err2 := m.Int64ObservableCounter("docapi.logins", metric.WithUnit("{login}"),
		metric.WithDescription("Login attempts, by result (ok, failed, throttled, busy)."))
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		app := t.app.Load()
		if app == nil {
			return nil
		}
		app.mu.Lock()
		defer app.mu.Unlock()
		for code, n := range app.requests {
			o.ObserveInt64(requests, n, metric.WithAttributes(attribute.Int("code", code)))
		}
		for result, n := range app.logins {
			o.ObserveInt64(logins, n, metric.WithAttributes(attribute.String("result", result)))
		}
		return nil
	}, requests, logins)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	t.regs = append(t.regs, reg)
	return t, nil
}

// register publishes p's Stats.
func (t *telemetry) register(p *pool.Pool) error {
	reg, err := t.observer.Register(p)
	if err != nil {
		return err
	}
	t.regs = append(t.regs, reg)
	return nil
}

// close stops the pipeline.
func (t *telemetry) close() error {
	var errs []error
	for _, r := range t.regs {
		errs = append(errs, r.Unregister())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(append(errs, t.provider.Shutdown(ctx))...)
}

// withTelemetry makes /metrics serve t's metrics, docapi's own counts among them.
func withTelemetry(t *telemetry) serverOption {
	return func(s *server) {
		t.app.Store(s.metrics)
		s.metrics.exposition = promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
	}
}
