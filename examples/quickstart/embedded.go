// The disposable database quickstart starts when none is configured. This is the one file of
// quickstart that imports the repository's test harness: a copy of quickstart outside the
// repository deletes it and runs against DATABASE_URL (or DB_*).

package main

import "github.com/pgsteady/pgsteady/internal/testkit/pgharness"

func init() { startEmbedded = pgharness.Disposable("quickstart") }
