package main

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestThrottleDelaysGrow(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	th := newThrottle(3, time.Second, 10*time.Second)
	th.now = func() time.Time { return now }
	tests := []struct {
		failures int
		want     time.Duration
	}{{1, 0}, {2, 0}, {3, time.Second}, {4, 2 * time.Second}, {5, 4 * time.Second}, {6, 8 * time.Second}, {7, 10 * time.Second}, {20, 10 * time.Second}}
	n := 0
	for _, tt := range tests {
		for ; n < tt.failures; n++ {
			th.fail("a@example.com")
		}
		if d := th.retryAfter("a@example.com"); d != tt.want {
			t.Errorf("after %d failures: wait %s, want %s", tt.failures, d, tt.want)
		}
	}
	if d := th.retryAfter("b@example.com"); d != 0 {
		t.Errorf("another key: wait %s, want none", d)
	}
	now = now.Add(4 * time.Second)
	if d := th.retryAfter("a@example.com"); d != 6*time.Second {
		t.Errorf("4 s later: wait %s, want the 6 s left", d)
	}
	now = now.Add(failureWindow)
	if d, n := th.retryAfter("a@example.com"), th.count("a@example.com"); d != 0 || n != 0 {
		t.Errorf("a window after the last failure: wait %s, %d failures; want none", d, n)
	}
	for range 3 {
		th.fail("a@example.com")
	}
	th.reset("a@example.com")
	if d := th.retryAfter("a@example.com"); d != 0 {
		t.Errorf("after reset: wait %s, want none", d)
	}
}

func TestKnownClients(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	k := newKnownClients()
	k.now = func() time.Time { return now }
	if got := k.key("a@example.com", "192.0.2.1"); got != "a@example.com" {
		t.Errorf("before any login: key %q, want the e-mail", got)
	}
	k.add("a@example.com", "192.0.2.1")
	if got := k.key("a@example.com", "192.0.2.1"); got == "a@example.com" {
		t.Error("after a login: the e-mail's own key, want the pair's")
	}
	if got := k.key("a@example.com", "192.0.2.2"); got != "a@example.com" {
		t.Errorf("another address: key %q, want the e-mail", got)
	}
	now = now.Add(knownClientTTL)
	if got := k.key("a@example.com", "192.0.2.1"); got != "a@example.com" {
		t.Errorf("after knownClientTTL: key %q, want the e-mail", got)
	}
}

func TestThrottleMemoryIsBounded(t *testing.T) {
	th := newThrottle(1, time.Hour, time.Hour)
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

// waitUntil polls cond: a wait for goroutines to reach a state, not a timing assertion.
func waitUntil(cond func() bool) {
	for !cond() {
		time.Sleep(time.Millisecond)
	}
}

func TestFairQueueTakesAddressesInTurn(t *testing.T) {
	q := newFairQueue(1, 10, 2)
	if q.acquire(t.Context(), "x", false, 0) != queueGranted {
		t.Fatal("first acquire: no slot")
	}
	waiting := func(n int) func() bool {
		return func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.waiting == n }
	}
	var order []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	enqueue := func(addr string, known bool) {
		q.mu.Lock()
		n := q.waiting
		q.mu.Unlock()
		wg.Go(func() {
			if q.acquire(t.Context(), addr, known, time.Hour) != queueGranted {
				t.Errorf("%s: no slot", addr)
				return
			}
			mu.Lock()
			order = append(order, addr)
			mu.Unlock()
			q.release()
		})
		waitUntil(waiting(n + 1))
	}
	enqueue("flood", false)
	enqueue("flood", false)
	if got := q.acquire(t.Context(), "flood", false, time.Hour); got != queueOverShare {
		t.Errorf("a third waiter of one address: %v, want queueOverShare", got)
	}
	enqueue("user", false)
	enqueue("known", true)
	q.release()
	wg.Wait()
	if want := []string{"known", "flood", "user", "flood"}; !slices.Equal(order, want) {
		t.Errorf("served %v, want %v: the known client first, then the addresses in turn", order, want)
	}
	// A waiter that gives up leaves no trace.
	q.acquire(t.Context(), "x", false, 0)
	if got := q.acquire(t.Context(), "late", false, 0); got != queueBusy {
		t.Errorf("no slot in time: %v, want queueBusy", got)
	}
	if len(q.queues) != 0 || len(q.order) != 0 || q.waiting != 0 {
		t.Errorf("after a waiter gave up: queues %v, order %v, waiting %d", q.queues, q.order, q.waiting)
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
