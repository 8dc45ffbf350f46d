// The disposable database doctor diagnoses when none is configured. This is the one file of
// doctor that imports the repository's test harness: a copy of doctor outside the repository
// deletes it and takes a connection string, DATABASE_URL or DB_*.

package main

import "github.com/pgsteady/pgsteady/internal/testkit/pgharness"

func init() { startEmbedded = pgharness.Disposable("doctor") }
