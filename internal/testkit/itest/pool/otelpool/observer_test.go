package otelpool_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp/oteltest"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"go.opentelemetry.io/otel/attribute"
)

var poolName = attribute.String("db.client.connection.pool.name", "test")

// A backend killed while a read waits on a lock: the pool retries the read on a new
// connection, and the retry shows in the counter and on the caller's span.
func TestBackendKillShowsAsRetryInMetricsAndOnTheSpan(t *testing.T) {
	r := oteltest.NewReader(t)
	obs, err := otelpool.NewObserver(r.Provider, otelpool.WithPoolName("test"))
	if err != nil {
		t.Fatal(err)
	}
	p, dsn := newPool(t, func(c *config.Config) { c.Size, c.Overflow = 2, 0 }, pool.WithObserver(obs))
	s := srv

	// Another session holds the lock the read waits for, so that the kill finds the read
	// in flight.
	holder, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}

	tracer, rec := oteltest.NewTracer(t)
	done := make(chan error, 1)
	go func() {
		ctx, span := tracer.Start(t.Context(), "read")
		var one int
		err := p.Idempotent().QueryRow(ctx, "SELECT 1 FROM pg_advisory_xact_lock(4242)").Scan(&one)
		span.End()
		done <- err
	}()
	waitForLockWaiter(t, holder)
	if _, err := s.TerminateBackends(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("read after the kill: %v, want it retried to success", err)
	}

	m := r.Collect(t)
	retries, _ := oteltest.IntValue(m["pgsteady.pool.retries"], poolName)
	if retries < 1 {
		t.Fatalf("pgsteady.pool.retries = %d after a killed read was retried, want >= 1", retries)
	}
	if broken, _ := oteltest.IntValue(m["pgsteady.pool.connection.closed"], attribute.String("pgsteady.connection.close_reason", "broken")); broken < 1 {
		t.Errorf("pgsteady.pool.connection.closed{reason=broken} = %d after a kill, want >= 1", broken)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	var classes []string
	for _, ev := range spans[0].Events() {
		if ev.Name != otelpool.RetryEvent {
			continue
		}
		for _, kv := range ev.Attributes {
			if kv.Key == "pgsteady.retry.class" {
				classes = append(classes, kv.Value.AsString())
			}
		}
	}
	if int64(len(classes)) != retries {
		t.Fatalf("span has %d retry events %v, want one per counted retry (%d)", len(classes), classes, retries)
	}
	for _, c := range classes {
		if n, _ := oteltest.IntValue(m["pgsteady.pool.retries"], attribute.String("pgsteady.retry.class", c)); n < 1 {
			t.Errorf("span event of class %s, but pgsteady.pool.retries{class=%s} = %d", c, c, n)
		}
	}
	t.Logf("retries %d, classes on the span %v", retries, classes)
}

// waitForLockWaiter returns once a session other than conn's waits for an advisory lock.
func waitForLockWaiter(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the read never waited for the lock")
		case <-time.After(20 * time.Millisecond):
		}
	}
}
