package otelpool_test

import (
	"testing"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp/oteltest"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/pool/otelpool"
	"go.opentelemetry.io/otel/attribute"
)

func TestRegisterNeedsAPool(t *testing.T) {
	o, err := otelpool.NewObserver(oteltest.NewReader(t).Provider)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Register(nil); err == nil {
		t.Fatal("Register(nil) succeeded")
	}
	if _, err := o.RegisterCluster(nil); err == nil {
		t.Fatal("RegisterCluster(nil) succeeded")
	}
}

// The pool name is given once, to NewObserver: the stats Register publishes carry it too.
func TestRegisterPublishesUnderTheObserversPoolName(t *testing.T) {
	r := oteltest.NewReader(t)
	o, err := otelpool.NewObserver(r.Provider, otelpool.WithPoolName("orders"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("postgres://app@127.0.0.1:1/app?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	cfg.LazyStart = true // no server: the stats are read, nothing connects
	p, err := pool.New(t.Context(), cfg, pool.WithObserver(o))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reg, err := o.Register(p)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	orders := attribute.String("db.client.connection.pool.name", "orders")
	if n, ok := oteltest.IntValue(r.Collect(t)["db.client.connection.max"], orders); !ok || n != int64(cfg.Size+cfg.Overflow) {
		t.Errorf("db.client.connection.max{pool.name=orders} = %d (found: %v), want Size+Overflow = %d", n, ok, cfg.Size+cfg.Overflow)
	}
	if n, ok := oteltest.IntValue(r.Collect(t)["pgsteady.pool.ping.timeout_waits"], orders); !ok || n != 0 {
		t.Errorf("pgsteady.pool.ping.timeout_waits{pool.name=orders} = %d (found: %v), want 0 (no pre-ping yet)", n, ok)
	}
}
