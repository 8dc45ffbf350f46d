package retry_test

import (
	"testing"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// srv is the package's disposable PostgreSQL for the integration tests, nil
// under -short.
var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{}) }
