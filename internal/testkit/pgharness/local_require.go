package pgharness

import (
	"os"
	"testing"
)

// RequireLocal returns the directory of the PostgreSQL server binaries for a test of the local
// cluster ([StartLocal]). Under -short it skips the test, like [Require]. When there are no
// binaries it fails the test when $CI is set (CI must test this path: .ci/run installs them),
// and otherwise skips it, saying what to install.
func RequireLocal(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short, against PostgreSQL binaries on this machine")
	}
	bin, err := FindLocalBinaries()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI=%s and %v: install the PostgreSQL server (apt-get install postgresql)", os.Getenv("CI"), err)
		}
		t.Skipf("%v: install the PostgreSQL server (apt-get install postgresql) to run this test", err)
	}
	return bin
}
