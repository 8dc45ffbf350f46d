package otelpool_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp/oteltest"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"github.com/pgsteady/pgsteady/retry"
	"go.opentelemetry.io/otel/attribute"
)

var poolName = attribute.String("db.client.connection.pool.name", "test")

func TestObserverCountsEachEventUnderItsAttribute(t *testing.T) {
	timeout := &pool.TimeoutError{Bound: "AcquireTimeout 1s"}
	tests := []struct {
		name   string
		event  func(context.Context, *otelpool.Observer)
		metric string
		attr   attribute.KeyValue
	}{
		{"retry not sent", func(ctx context.Context, o *otelpool.Observer) {
			o.Retrying(ctx, pool.RetryEvent{Attempt: 1, Class: retry.NotSent, Err: io.EOF, Delay: time.Millisecond})
		}, "pgsteady.pool.retries", attribute.String("pgsteady.retry.class", "not-sent")},
		{"retry conn lost", func(ctx context.Context, o *otelpool.Observer) {
			o.Retrying(ctx, pool.RetryEvent{Attempt: 2, Class: retry.ConnLost, Err: io.ErrUnexpectedEOF, Delay: time.Millisecond})
		}, "pgsteady.pool.retries", attribute.String("pgsteady.retry.class", "conn-lost")},
		{"retry conflict", func(ctx context.Context, o *otelpool.Observer) {
			o.Retrying(ctx, pool.RetryEvent{Attempt: 1, Class: retry.Conflict, Err: &pgconn.PgError{Code: "40001"}, Delay: time.Millisecond})
		}, "pgsteady.pool.retries", attribute.String("pgsteady.retry.class", "conflict")},
		{"failed ping", func(ctx context.Context, o *otelpool.Observer) {
			o.PingFailed(ctx, pool.PingEvent{Idle: time.Minute, Err: io.EOF})
		}, "pgsteady.pool.ping.failures", poolName},
		{"closed broken", func(ctx context.Context, o *otelpool.Observer) {
			o.ConnClosed(ctx, pool.CloseEvent{Reason: pool.CloseBroken})
		},
			"pgsteady.pool.connection.closed", attribute.String("pgsteady.connection.close_reason", "broken")},
		{"closed overflow", func(ctx context.Context, o *otelpool.Observer) {
			o.ConnClosed(ctx, pool.CloseEvent{Reason: pool.CloseOverflow})
		},
			"pgsteady.pool.connection.closed", attribute.String("pgsteady.connection.close_reason", "overflow")},
		{"closed for a reason added later", func(ctx context.Context, o *otelpool.Observer) {
			o.ConnClosed(ctx, pool.CloseEvent{Reason: "new-reason"})
		},
			"pgsteady.pool.connection.closed", attribute.String("pgsteady.connection.close_reason", "new-reason")},
		{"commit ok", func(ctx context.Context, o *otelpool.Observer) {
			o.Committed(ctx, pool.CommitEvent{Outcome: pool.CommitOK})
		},
			"pgsteady.pool.commits", attribute.String("pgsteady.commit.outcome", "ok")},
		{"commit ambiguous", func(ctx context.Context, o *otelpool.Observer) {
			o.Committed(ctx, pool.CommitEvent{Outcome: pool.CommitAmbiguous})
		},
			"pgsteady.pool.commits", attribute.String("pgsteady.commit.outcome", "ambiguous")},
		{"commit resolved committed", func(ctx context.Context, o *otelpool.Observer) {
			o.Committed(ctx, pool.CommitEvent{Outcome: pool.CommitResolvedCommitted})
		}, "pgsteady.pool.commits", attribute.String("pgsteady.commit.outcome", "resolved-committed")},
		{"commit resolved aborted", func(ctx context.Context, o *otelpool.Observer) {
			o.Committed(ctx, pool.CommitEvent{Outcome: pool.CommitResolvedAborted})
		}, "pgsteady.pool.commits", attribute.String("pgsteady.commit.outcome", "resolved-aborted")},
		{"acquired", func(ctx context.Context, o *otelpool.Observer) {
			o.Acquired(ctx, pool.AcquireEvent{Wait: time.Millisecond, Err: nil})
		},
			"db.client.connection.wait_time", poolName},
		{"acquire timed out", func(ctx context.Context, o *otelpool.Observer) {
			o.Acquired(ctx, pool.AcquireEvent{Wait: time.Second, Err: timeout})
		},
			"db.client.connection.wait_time", attribute.String("error.type", "timeout")},
		{"acquire canceled", func(ctx context.Context, o *otelpool.Observer) {
			o.Acquired(ctx, pool.AcquireEvent{Wait: time.Second, Err: context.Canceled})
		}, "db.client.connection.wait_time", attribute.String("error.type", "canceled")},
		{"acquire on a closed pool", func(ctx context.Context, o *otelpool.Observer) {
			o.Acquired(ctx, pool.AcquireEvent{Wait: 0, Err: pool.ErrClosed})
		}, "db.client.connection.wait_time", attribute.String("error.type", "closed")},
		{"acquire failed to connect", func(ctx context.Context, o *otelpool.Observer) {
			o.Acquired(ctx, pool.AcquireEvent{Wait: time.Millisecond, Err: &pgconn.ConnectError{}})
		}, "db.client.connection.wait_time", attribute.String("error.type", "_OTHER")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := oteltest.NewReader(t)
			o, err := otelpool.NewObserver(r.Provider, otelpool.WithPoolName("test"))
			if err != nil {
				t.Fatal(err)
			}
			tt.event(t.Context(), o)
			tt.event(t.Context(), o)
			m, ok := r.Collect(t)[tt.metric]
			if !ok {
				t.Fatalf("no %s after two events", tt.metric)
			}
			n, _ := oteltest.IntValue(m, poolName, tt.attr)
			if tt.metric == "db.client.connection.wait_time" {
				n = int64(oteltest.HistCount(m, poolName, tt.attr))
			}
			if n != 2 {
				t.Errorf("%s{%s, %s} = %d after two events, want 2", tt.metric, poolName.Value.Emit(), tt.attr.Value.Emit(), n)
			}
		})
	}
}

func TestRetryAddsAnEventToARecordingSpanOnly(t *testing.T) {
	r := oteltest.NewReader(t)
	o, err := otelpool.NewObserver(r.Provider)
	if err != nil {
		t.Fatal(err)
	}
	tracer, rec := oteltest.NewTracer(t)
	ctx, span := tracer.Start(t.Context(), "request")
	cause := fmt.Errorf("reading: %w", &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"})
	o.Retrying(ctx, pool.RetryEvent{Attempt: 1, Class: retry.ConnLost, Err: cause, Delay: 250 * time.Millisecond})
	o.Retrying(ctx, pool.RetryEvent{Attempt: 2, Class: retry.NotSent, Err: io.EOF, Delay: 500 * time.Millisecond})
	span.End()
	// A span that is not recording (no span at all, or a sampled-out one) gets nothing and
	// costs nothing.
	o.Retrying(context.Background(), pool.RetryEvent{Attempt: 1, Class: retry.NotSent, Err: io.EOF, Delay: time.Millisecond})
	o.Retrying(ctx, pool.RetryEvent{Attempt: 3, Class: retry.NotSent, Err: io.EOF, Delay: time.Millisecond}) // span ended

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	events := spans[0].Events()
	if len(events) != 2 {
		t.Fatalf("span has %d events, want 2 (one per retry while it recorded): %+v", len(events), events)
	}
	want := []map[attribute.Key]attribute.Value{
		{
			"pgsteady.retry.attempt": attribute.IntValue(1),
			"pgsteady.retry.class":   attribute.StringValue("conn-lost"),
			"pgsteady.retry.delay":   attribute.Float64Value(0.25),
			"error.type":             attribute.StringValue("57P01"),
			"error.message":          attribute.StringValue(cause.Error()),
		},
		{
			"pgsteady.retry.attempt": attribute.IntValue(2),
			"pgsteady.retry.class":   attribute.StringValue("not-sent"),
			"pgsteady.retry.delay":   attribute.Float64Value(0.5),
			"error.type":             attribute.StringValue("*errors.errorString"),
			"error.message":          attribute.StringValue("EOF"),
		},
	}
	for i, ev := range events {
		if ev.Name != otelpool.RetryEvent {
			t.Errorf("event %d is %q, want %q", i, ev.Name, otelpool.RetryEvent)
		}
		got := map[attribute.Key]attribute.Value{}
		for _, kv := range ev.Attributes {
			got[kv.Key] = kv.Value
		}
		if len(got) != len(want[i]) {
			t.Errorf("event %d has attributes %v, want %v", i, got, want[i])
		}
		for k, v := range want[i] {
			if got[k] != v {
				t.Errorf("event %d: %s = %s, want %s", i, k, got[k].Emit(), v.Emit())
			}
		}
	}
	if n, _ := oteltest.IntValue(r.Collect(t)["pgsteady.pool.retries"]); n != 4 {
		t.Errorf("pgsteady.pool.retries = %d, want 4: every retry is counted, traced or not", n)
	}
}
