package otelpool_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testhelp/oteltest"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"go.opentelemetry.io/otel/attribute"
)

// The observable instruments report what Stats says at collection time: with connections
// held, idle, waited for in vain, and after unregistering, nothing.
func TestConnectionGaugesMatchStats(t *testing.T) {
	r := oteltest.NewReader(t)
	obs, err := otelpool.NewObserver(r.Provider, otelpool.WithPoolName("test"))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := newPool(t, func(c *config.Config) {
		c.Size, c.Overflow = 2, 1
		c.AcquireTimeout = 300 * time.Millisecond
	}, pool.WithObserver(obs))
	reg, err := obs.Register(p)
	if err != nil {
		t.Fatal(err)
	}

	check := func(step string, want func(pool.Stats) map[string]int64) {
		t.Helper()
		m := r.Collect(t)
		st := p.Stats()
		for name, w := range map[string]struct {
			metric string
			attr   attribute.KeyValue
			value  int64
		}{
			"idle":     {"db.client.connection.count", attribute.String("db.client.connection.state", "idle"), int64(st.IdleConns)},
			"used":     {"db.client.connection.count", attribute.String("db.client.connection.state", "used"), int64(st.AcquiredConns)},
			"max":      {"db.client.connection.max", poolName, int64(st.MaxConns)},
			"idle.max": {"db.client.connection.idle.max", poolName, int64(st.Size)},
			"pending":  {"db.client.connection.pending_requests", poolName, int64(st.Waiting)},
			"timeouts": {"db.client.connection.timeouts", poolName, st.AcquireTimeouts},
			"opened":   {"pgsteady.pool.connection.opened", poolName, st.Opened},
		} {
			got, ok := oteltest.IntValue(m[w.metric], poolName, w.attr)
			if !ok {
				t.Errorf("%s: no %s{%s}", step, w.metric, w.attr.Value.Emit())
				continue
			}
			if got != w.value {
				t.Errorf("%s: %s{%s} = %d, Stats says %d", step, w.metric, w.attr.Value.Emit(), got, w.value)
			}
			if exp, ok := want(st)[name]; ok && got != exp {
				t.Errorf("%s: %s = %d, want %d", step, name, got, exp)
			}
		}
	}

	check("after New", func(pool.Stats) map[string]int64 { return map[string]int64{"max": 3, "idle.max": 2, "used": 0} })

	held := testhelp.Hold(t, p, 3)
	check("three held", func(pool.Stats) map[string]int64 { return map[string]int64{"used": 3, "idle": 0} })

	if _, err := p.Acquire(t.Context()); !errors.Is(err, pool.ErrPoolTimeout) {
		t.Fatalf("Acquire with all connections held: %v, want ErrPoolTimeout", err)
	}
	check("after a timeout", func(pool.Stats) map[string]int64 { return map[string]int64{"timeouts": 1} })
	if n := oteltest.HistCount(r.Collect(t)["db.client.connection.wait_time"], attribute.String("error.type", "timeout")); n < 1 {
		t.Errorf("wait_time{error.type=timeout} has %d points after a timeout, want >= 1", n)
	}

	held[0].Release()
	check("one given back", func(st pool.Stats) map[string]int64 { return map[string]int64{"used": 2, "idle": 1} })

	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if _, ok := oteltest.IntValue(r.Collect(t)["db.client.connection.count"]); ok {
		t.Error("db.client.connection.count still reported after Unregister")
	}
	for _, c := range held[1:] {
		c.Release()
	}
}
