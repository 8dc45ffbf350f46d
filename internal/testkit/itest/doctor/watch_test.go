package doctor_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool/doctor"
	"github.com/pgsteady/pgsteady/retry"
)

// TestWatchSeesIdleTimeout: in a database whose sessions are closed after 1 s idle, Watch's
// busy session keeps answering while its idle ladder finds a session closed by the server, and
// reports it with its retry class.
func TestWatchSeesIdleTimeout(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dsn)
	admin(t, "ALTER DATABASE "+u.Path[1:]+" SET idle_session_timeout = '1s'")
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}

	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var pings, connects int
	var fault *doctor.Event
	err = doctor.Watch(wctx, cfg, doctor.WatchOptions{Every: 300 * time.Millisecond}, func(e doctor.Event) {
		t.Logf("%s idle=%v err=%v class=%s", e.Probe, e.Idle, e.Err, e.Class)
		switch {
		case e.Err == nil && e.Probe == doctor.ProbePing:
			pings++
		case e.Err == nil && e.Probe == doctor.ProbeConnect:
			connects++
		case e.Err != nil && e.Probe == doctor.ProbeIdle:
			fault = &e
			stop()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if fault == nil {
		t.Fatal("no idle session found closed before the deadline")
	}
	if fault.Class != retry.Classify(fault.Err).String() || fault.Class == "" {
		t.Errorf("class %q for %v", fault.Class, fault.Err)
	}
	if pings == 0 || connects == 0 {
		t.Errorf("%d pings and %d connects worked, want some of each", pings, connects)
	}
}
