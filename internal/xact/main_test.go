package xact_test

import (
	"testing"

	"github.com/pgsteady/pgsteady/internal/pgharness"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{PgBouncer: true}) }
