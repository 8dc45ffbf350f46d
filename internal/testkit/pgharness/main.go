package pgharness

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// Main is the body of a test package's TestMain. Unless the tests run with -short it starts one
// [Server] for the whole package, stores it in *srv, runs the tests and removes the container,
// also when the run is interrupted. Under -short it starts nothing and *srv stays nil, so
// integration tests must call [Require].
//
// When no Docker engine answers, Main fails the run: integration tests never skip silently.
func Main(m *testing.M, srv **Server, opts Options) {
	os.Exit(run(m, srv, opts))
}

func run(m *testing.M, srv **Server, opts Options) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	s, err := Start(ctx, opts)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\nIntegration tests need a Docker engine and the test image (see .ci/run); `go test -short` runs the unit tests alone.\n", err)
		return 1
	}
	*srv = s
	defer s.Close()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			s.Close()
			os.Exit(1)
		}
	}()
	return m.Run()
}

// Require returns srv for an integration test. Under -short it skips the test (integration
// tests are not part of a -short run); otherwise a nil srv fails the test.
func Require(t testing.TB, srv *Server) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: runs without -short, against Docker")
	}
	if srv == nil {
		t.Fatal("pgharness: no server; call pgharness.Main from TestMain")
	}
	return srv
}
