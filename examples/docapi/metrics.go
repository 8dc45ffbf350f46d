package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
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

	exposition http.Handler // serves /metrics when set (withTelemetry); else metricsHandler writes it
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

// metricsHandler serves GET /metrics in the Prometheus exposition format. With telemetry
// (withTelemetry, as run sets up) it serves the pool's OpenTelemetry metrics (package otelpool)
// and docapi's request and login counts through the OpenTelemetry Prometheus exporter; without,
// it writes the pool's [pool.Stats] and the same counts in the text format (version 0.0.4) by
// hand. Like /healthz it needs no token: it holds no user data, and scrapers rarely carry one.
func (s *server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	if s.metrics.exposition != nil {
		s.metrics.exposition.ServeHTTP(w, r)
		return
	}
	st := s.pool.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	b := bufio.NewWriter(w)
	defer b.Flush()
	metric := func(name, typ, help string, samples ...sample) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, smp := range samples {
			if smp.labels != "" {
				fmt.Fprintf(b, "%s{%s} %d\n", name, smp.labels, smp.v)
			} else {
				fmt.Fprintf(b, "%s %d\n", name, smp.v)
			}
		}
	}
	one := func(v int64) sample { return sample{v: v} }

	metric("pgsteady_pool_size", "gauge", "Configured permanent connections (Size).", one(int64(st.Size)))
	metric("pgsteady_pool_max_connections", "gauge", "Most connections the pool opens (Size + Overflow).", one(int64(st.MaxConns)))
	metric("pgsteady_pool_connections", "gauge", "Open connections, by state.",
		sample{`state="idle"`, int64(st.IdleConns)},
		sample{`state="in_use"`, int64(st.AcquiredConns)},
		sample{`state="other"`, int64(max(0, st.TotalConns-st.IdleConns-st.AcquiredConns))})
	metric("pgsteady_pool_overflow_connections", "gauge", "Open connections beyond Size.", one(int64(st.OverflowConns)))
	metric("pgsteady_pool_waiting", "gauge", "Callers waiting for a connection.", one(int64(st.Waiting)))
	metric("pgsteady_pool_acquires_total", "counter", "Connection acquire attempts.", one(st.AcquireCount))
	metric("pgsteady_pool_acquire_timeouts_total", "counter", "Acquire attempts that timed out.", one(st.AcquireTimeouts))
	metric("pgsteady_pool_retries_total", "counter", "Retries, by error class.",
		sample{`class="conflict"`, st.Retries.Conflict},
		sample{`class="conn-lost"`, st.Retries.ConnLost},
		sample{`class="not-sent"`, st.Retries.NotSent})
	metric("pgsteady_pool_failed_pings_total", "counter", "Pre-pings that failed.", one(st.FailedPings))
	metric("pgsteady_pool_connections_opened_total", "counter", "Connections opened.", one(st.Opened))
	metric("pgsteady_pool_connections_recycled_total", "counter", "Connections closed for age or idleness.", one(st.Recycled))
	metric("pgsteady_pool_connections_overflow_closed_total", "counter", "Connections closed on release while Size were idle.", one(st.OverflowClosed))
	metric("pgsteady_pool_connections_destroyed_total", "counter", "Connections closed because they failed.", one(st.Destroyed))

	s.metrics.mu.Lock()
	var reqs, logins []sample
	for _, code := range slices.Sorted(maps.Keys(s.metrics.requests)) {
		reqs = append(reqs, sample{`code="` + strconv.Itoa(code) + `"`, s.metrics.requests[code]})
	}
	for _, result := range slices.Sorted(maps.Keys(s.metrics.logins)) {
		logins = append(logins, sample{`result="` + result + `"`, s.metrics.logins[result]})
	}
	s.metrics.mu.Unlock()
	metric("docapi_http_requests_total", "counter", "HTTP requests answered, by status code.", reqs...)
	metric("docapi_logins_total", "counter", "Login attempts, by result (ok, failed, throttled, busy).", logins...)
}

type sample struct {
	labels string
	v      int64
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
	reg, err := otelpool.Register(p, t.provider, otelpool.WithPoolName(poolName))
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
