package config_test

import (
	"testing"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// srv is the disposable TLS PostgreSQL (with PgBouncer in transaction mode) for the
// integration tests; nil under -short.
var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{PgBouncer: true}) }
