package config_test

import (
	"os"
	"testing"
)

// envVars are every variable this package or pgconn reads.
var envVars = []string{
	"DATABASE_URL", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE",
	"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGAPPNAME",
	"PGCONNECT_TIMEOUT", "PGSSLMODE", "PGSSLKEY", "PGSSLCERT", "PGSSLCERTMODE", "PGSSLSNI",
	"PGSSLROOTCERT", "PGSSLPASSWORD", "PGSSLNEGOTIATION", "PGTARGETSESSIONATTRS", "PGSERVICE",
	"PGSERVICEFILE", "PGTZ", "PGOPTIONS", "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION",
	"PGCHANNELBINDING", "PGREQUIREAUTH",
}

// clearEnv unsets every variable in envVars for the test (restored afterwards) and points
// PGPASSFILE nowhere, so that the machine's environment cannot change a result.
func clearEnv(t testing.TB) {
	t.Helper()
	for _, k := range envVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("PGPASSFILE", "/nonexistent/pgpass")
}
