package otelpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{}) }

// newPool builds a pool on a fresh database, after letting edit change the parsed config, and
// returns it with the database's DSN.
func newPool(t *testing.T, edit func(*config.Config), opts ...pool.Option) (*pool.Pool, string) {
	t.Helper()
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	p, err := pool.New(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, dsn
}

// reader is an SDK MeterProvider whose metrics a test collects on demand.
type reader struct {
	r  *sdkmetric.ManualReader
	mp *sdkmetric.MeterProvider
}

func newReader(t *testing.T) *reader {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &reader{r: r, mp: mp}
}

// collect returns the metrics collected now, by name.
func (r *reader) collect(t *testing.T) map[string]metricdata.Metrics {
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

// intValue sums the points of the int64 sum m whose attributes hold all of want, and says
// whether there was any.
func intValue(m metricdata.Metrics, want ...attribute.KeyValue) (int64, bool) {
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

// histCount sums the counts of the float64 histogram m's points whose attributes hold all of
// want.
func histCount(m metricdata.Metrics, want ...attribute.KeyValue) uint64 {
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
