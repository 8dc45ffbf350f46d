package testhelp

import (
	"os"
	"testing"
)

// EnvVars are every environment variable package config or pgconn reads.
var EnvVars = []string{
	"DATABASE_URL", "DB_USER", "DB_PASSWORD", "DB_HOST", "DB_PORT", "DB_NAME", "DB_SSLMODE",
	"PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGAPPNAME",
	"PGCONNECT_TIMEOUT", "PGSSLMODE", "PGSSLKEY", "PGSSLCERT", "PGSSLCERTMODE", "PGSSLSNI",
	"PGSSLROOTCERT", "PGSSLPASSWORD", "PGSSLNEGOTIATION", "PGTARGETSESSIONATTRS", "PGSERVICE",
	"PGSERVICEFILE", "PGTZ", "PGOPTIONS", "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION",
	"PGCHANNELBINDING", "PGREQUIREAUTH",
}

// ClearEnv unsets every variable in EnvVars for the test (restored afterwards) and points
// PGPASSFILE nowhere, so that the machine's environment cannot change a result.
func ClearEnv(t testing.TB) {
	t.Helper()
	for _, k := range EnvVars {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("PGPASSFILE", "/nonexistent/pgpass")
}

// SetEnv sets vars for the test after clearing the environment. A value of "\x00unset" leaves
// the variable unset.
func SetEnv(t testing.TB, vars map[string]string) {
	t.Helper()
	ClearEnv(t)
	for k, v := range vars {
		if v == "\x00unset" {
			continue
		}
		t.Setenv(k, v)
	}
}
