package main

import (
	"context"
	"fmt"
	"testing"
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

func TestKeyedLockTakesTurnsPerKey(t *testing.T) {
	l := newKeyedLock()
	if !l.lock(t.Context(), "a", time.Second) {
		t.Fatal("lock a failed")
	}
	if !l.lock(t.Context(), "b", time.Second) {
		t.Error("lock b waited for a")
	}
	if l.lock(t.Context(), "a", 10*time.Millisecond) {
		t.Error("a was taken twice")
	}
	l.unlock("a")
	l.unlock("b")
	if !l.lock(t.Context(), "a", time.Second) {
		t.Error("lock a after unlock failed")
	}
	l.unlock("a")
	if n := len(l.keys); n != 0 {
		t.Errorf("%d keys left with nobody holding or waiting, want 0", n)
	}
}
