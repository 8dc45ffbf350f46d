package doctor_test

import (
	"context"
	"fmt"
	"net"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/pool/doctor"
)

// A host name that does not resolve stops the diagnosis at DNS; what the connection string
// says is still judged. (The LookupFunc stands in for a DNS that answers "no such host".)
func ExampleDiagnose() {
	cfg, err := config.Parse("postgresql+psycopg2://app:secret@db.example.invalid/app?sslmode=require")
	if err != nil {
		fmt.Println(err)
		return
	}
	noSuchHost := func(_ context.Context, host string) ([]string, error) {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	r, err := doctor.Diagnose(context.Background(), cfg, doctor.Options{LookupFunc: noSuchHost})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.ConnString.Masked)
	for _, f := range r.Findings {
		fmt.Printf("%-4s %s\n", f.Level, f.ID)
	}
	for _, a := range r.Advice {
		fmt.Printf("advice: set %s to %s\n", a.Setting, a.Change)
	}
	fmt.Println("worst:", r.Worst())
	// Output:
	// postgresql://app:xxxxx@db.example.invalid/app?sslmode=require
	// warn conn.warning
	// warn conn.sslmode
	// fail path.dns
	// ok   timeout.keepalive
	// advice: set sslmode to verify-full, with sslrootcert set to the provider's CA (or sslrootcert=system for a public CA)
	// worst: fail
}
