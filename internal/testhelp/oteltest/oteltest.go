// Package oteltest collects what an OpenTelemetry SDK records, for the tests of package
// otelpool and of the integration suite: metrics on demand ([Reader]) and ended spans
// ([NewTracer]). Only tests import it.
package oteltest

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Reader is an SDK MeterProvider whose metrics a test collects on demand.
type Reader struct {
	Provider *sdkmetric.MeterProvider
	r        *sdkmetric.ManualReader
}

// NewReader returns a Reader that shuts down when the test ends.
func NewReader(t testing.TB) *Reader {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &Reader{Provider: mp, r: r}
}

// Collect returns the metrics collected now, by name.
func (r *Reader) Collect(t testing.TB) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.r.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = m
		}
	}
	return got
}

// has reports whether set holds every one of want.
func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// IntValue sums the points of the int64 sum m whose attributes hold all of want, and says
// whether there was any.
func IntValue(m metricdata.Metrics, want ...attribute.KeyValue) (int64, bool) {
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		return 0, false
	}
	var v int64
	found := false
	for _, dp := range sum.DataPoints {
		if has(dp.Attributes, want) {
			v += dp.Value
			found = true
		}
	}
	return v, found
}

// HistCount sums the counts of the float64 histogram m's points whose attributes hold all of
// want.
func HistCount(m metricdata.Metrics, want ...attribute.KeyValue) uint64 {
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		return 0
	}
	var n uint64
	for _, dp := range h.DataPoints {
		if has(dp.Attributes, want) {
			n += dp.Count
		}
	}
	return n
}

// NewTracer returns a tracer whose ended spans rec holds; its provider shuts down when the
// test ends.
func NewTracer(t testing.TB) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp.Tracer("test"), rec
}
