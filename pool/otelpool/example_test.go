package otelpool_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"github.com/pgsteady/pgsteady/retry"
)

// A service's start-up with metrics: the observer goes in at New, and publishes the pool's
// stats once the pool exists; the pool name is given once. mp is the application's MeterProvider, with whatever exporter it uses.
func Example() {
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider() // with sdkmetric.WithReader(your exporter)
	cfg, err := config.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	obs, err := otelpool.NewObserver(mp, otelpool.WithPoolName("orders"))
	if err != nil {
		log.Fatal(err)
	}
	p, err := pool.New(ctx, cfg, pool.WithObserver(obs))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	reg, err := obs.Register(p) // the stats, under the same pool name
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
}

// What a retry leaves behind: a count by class, and an event on the caller's span. The pool
// calls Retrying itself; the call here stands for a connection lost mid-read.
func ExampleObserver_Retrying() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	obs, err := otelpool.NewObserver(mp, otelpool.WithPoolName("orders"))
	if err != nil {
		log.Fatal(err)
	}
	ctx, span := tp.Tracer("example").Start(context.Background(), "GET /orders/42")
	obs.Retrying(ctx, pool.RetryEvent{Attempt: 1, Class: retry.ConnLost, Err: errors.New("unexpected EOF"), Delay: 100 * time.Millisecond})
	span.End()

	for _, ev := range spans.Ended()[0].Events() {
		fmt.Println("span event:", ev.Name)
		for _, kv := range ev.Attributes {
			fmt.Printf("  %s=%s\n", kv.Key, kv.Value.Emit())
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			class, _ := dp.Attributes.Value("pgsteady.retry.class")
			fmt.Printf("%s{class=%s} %d\n", m.Name, class.Emit(), dp.Value)
		}
	}
	// Output:
	// span event: pgsteady.retry
	//   pgsteady.retry.attempt=1
	//   pgsteady.retry.class=conn-lost
	//   pgsteady.retry.delay=0.1
	//   error.type=*errors.errorString
	//   error.message=unexpected EOF
	// pgsteady.pool.retries{class=conn-lost} 1
}
