package otelpool_test

import (
	"testing"

	"github.com/pgsteady/pgsteady/pool/otelpool"
)

func TestRegisterNeedsAPool(t *testing.T) {
	if _, err := otelpool.Register(nil, newReader(t).mp); err == nil {
		t.Fatal("Register(nil) succeeded")
	}
}

func TestRegisterClusterNeedsACluster(t *testing.T) {
	if _, err := otelpool.RegisterCluster(nil, newReader(t).mp); err == nil {
		t.Fatal("RegisterCluster(nil) succeeded")
	}
}
