package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestThrottleLimitsFailuresPerWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	th := newThrottle(3, 15*time.Minute)
	th.now = func() time.Time { return now }

	for i := range 3 {
		if d := th.retryAfter("a@example.com"); d != 0 {
			t.Fatalf("after %d failures: wait %s, want none", i, d)
		}
		th.fail("a@example.com")
		now = now.Add(time.Minute)
	}
	if d := th.retryAfter("a@example.com"); d != 12*time.Minute {
		t.Errorf("after 3 failures in 3 minutes: wait %s, want the 12 minutes left of the window", d)
	}
	if d := th.retryAfter("b@example.com"); d != 0 {
		t.Errorf("another key: wait %s, want none", d)
	}
	now = now.Add(12 * time.Minute)
	if d := th.retryAfter("a@example.com"); d != 0 {
		t.Errorf("once the window is over: wait %s, want none", d)
	}
	th.fail("a@example.com")
	if d := th.retryAfter("a@example.com"); d != 0 {
		t.Errorf("one failure in a new window: wait %s, want none", d)
	}
	for range 2 {
		th.fail("a@example.com")
	}
	th.reset("a@example.com")
	if d := th.retryAfter("a@example.com"); d != 0 {
		t.Errorf("after reset: wait %s, want none", d)
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	th := newThrottle(1, time.Hour)
	for i := range maxThrottleKeys + 10 {
		th.fail(fmt.Sprint(i))
	}
	if n := len(th.keys); n > maxThrottleKeys {
		t.Errorf("%d keys kept, want at most %d", n, maxThrottleKeys)
	}
	if d := th.retryAfter(fmt.Sprint(maxThrottleKeys + 9)); d == 0 {
		t.Error("the newest key was dropped")
	}
}

func TestSemaphoreBoundsWorkAndWaiting(t *testing.T) {
	s := newSemaphore(1, 1)
	if !s.acquire(t.Context(), time.Second) {
		t.Fatal("first acquire failed")
	}
	// One waiter is allowed; it gives up at its deadline.
	ctx, cancel := context.WithCancel(t.Context())
	waited := make(chan bool)
	go func() { waited <- s.acquire(ctx, time.Hour) }()
	for {
		s.mu.Lock()
		n := s.waiting
		s.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if s.acquire(t.Context(), time.Hour) {
		t.Error("a second waiter got a slot, want it refused at once")
	}
	cancel()
	if <-waited {
		t.Error("a canceled waiter got a slot")
	}
	s.release()
	if !s.acquire(t.Context(), 0) {
		t.Error("acquire after release failed")
	}
}

func TestTurnsBoundCallersInFlightPerKey(t *testing.T) {
	l := newTurns()
	upTo := func(n int) func(int) bool { return func(inflight int) bool { return inflight < n } }
	for i := range 2 {
		if !l.enter(t.Context(), "a", time.Second, upTo(2)) {
			t.Fatalf("caller %d of 2 did not enter", i)
		}
	}
	if !l.enter(t.Context(), "b", time.Second, upTo(2)) {
		t.Error("another key waited")
	}
	if l.enter(t.Context(), "a", 10*time.Millisecond, upTo(2)) {
		t.Error("a third caller entered, want it to wait and give up")
	}
	entered := make(chan bool)
	go func() { entered <- l.enter(t.Context(), "a", time.Minute, upTo(2)) }()
	for {
		l.mu.Lock()
		n := l.keys["a"].waiting
		l.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	l.leave("a")
	if !<-entered {
		t.Error("a waiting caller did not enter when another left")
	}
	l.leave("a")
	l.leave("a")
	l.leave("b")
	if n := len(l.keys); n != 0 {
		t.Errorf("%d keys left with nobody in flight or waiting, want 0", n)
	}
}

func TestFlightsShareOneRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFlights()
		key := [32]byte{1}
		release := make(chan struct{})
		var runs atomic.Int32
		results := make(chan checkResult, 2)
		go func() {
			results <- f.do(t.Context(), key, func() checkResult { runs.Add(1); <-release; return checkRight })
		}()
		synctest.Wait() // the first caller is comparing
		go func() { results <- f.do(t.Context(), key, func() checkResult { runs.Add(1); return checkWrong }) }()
		synctest.Wait() // the second waits for the first's result
		if other := f.do(t.Context(), [32]byte{2}, func() checkResult { return checkWrong }); other != checkWrong {
			t.Errorf("another key got %v, want its own result", other)
		}
		close(release)
		if a, b := <-results, <-results; a != checkRight || b != checkRight || runs.Load() != 1 {
			t.Errorf("results %v and %v after %d runs, want checkRight twice after one run", a, b, runs.Load())
		}
		if res := f.do(t.Context(), key, func() checkResult { return checkWrong }); res != checkWrong {
			t.Error("a finished flight's result was kept")
		}
	})
}
