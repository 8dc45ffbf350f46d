package main

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Login abuse limits. A wrong password, or an unknown e-mail, counts as a failure of both the
// e-mail and the client address. Once a key has reached its limit within failureWindow, every
// login for it is answered 429 until the window that began with its first failure ends, without
// any bcrypt work. A correct password clears the e-mail's failures (not the address's).
const (
	// emailFailureLimit is how many failed logins an e-mail may have per failureWindow.
	emailFailureLimit = 5
	// addrFailureLimit is how many failed logins a client address may have per failureWindow
	// (higher: several users may share an address behind a NAT).
	addrFailureLimit = 20
	// failureWindow is how long failures are remembered, from a key's first failure.
	failureWindow = 15 * time.Minute
	// maxThrottleKeys bounds the memory of each throttle.
	maxThrottleKeys = 100_000

	// bcryptMaxWaiting bounds the logins waiting for a bcrypt slot; more are answered 503 at once.
	bcryptMaxWaiting = 256
	// loginMaxWait is the longest a login waits for its turns (for its e-mail, then for a bcrypt
	// slot, in all) before it is answered 503. Long enough for the seed's load test, whose 50
	// users log in to one account at the same instant, on a busy machine.
	loginMaxWait = 30 * time.Second
)

// bcryptSlots is how many password comparisons run at once: half the CPUs, at least one.
// bcrypt at the default cost takes 80 ms or more of CPU, and a flood of logins must leave the
// other half to everything else: measured on a busy 2-core machine, two slots let a flood
// push /healthz's p99 to 700 ms, one kept it near 45 ms.
var bcryptSlots = max(1, runtime.GOMAXPROCS(0)/2)

// throttle counts failures per key (an e-mail or a client address) in a fixed window that
// begins with the key's first failure. It is safe for concurrent use.
type throttle struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n     int
	since time.Time
}

func newThrottle(limit int, window time.Duration) *throttle {
	return &throttle{limit: limit, window: window, now: time.Now, keys: map[string]*failures{}}
}

// retryAfter returns how long key must wait before its next attempt: 0 when it may try now.
func (t *throttle) retryAfter(key string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil {
		return 0
	}
	now := t.now()
	end := f.since.Add(t.window)
	if !now.Before(end) {
		delete(t.keys, key)
		return 0
	}
	if f.n < t.limit {
		return 0
	}
	return end.Sub(now)
}

// fail records a failure of key.
func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.keys[key]
	if f == nil || !now.Before(f.since.Add(t.window)) {
		if f == nil && len(t.keys) >= maxThrottleKeys {
			t.evict(now)
		}
		f = &failures{since: now}
		t.keys[key] = f
	}
	f.n++
}

// count returns key's failures in its current window.
func (t *throttle) count(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil || !t.now().Before(f.since.Add(t.window)) {
		return 0
	}
	return f.n
}

// reset forgets key's failures.
func (t *throttle) reset(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.keys, key)
}

// evict makes room: it drops the expired keys, and if none had expired, 1 % of the keys at
// random (which lets those start afresh: the price of bounded memory), so that the next
// hundreds of new keys find room without another sweep.
func (t *throttle) evict(now time.Time) {
	n := len(t.keys)
	for k, f := range t.keys {
		if !now.Before(f.since.Add(t.window)) {
			delete(t.keys, k)
		}
	}
	drop := max(1, n/100)
	for k := range t.keys {
		if len(t.keys) <= n-drop {
			return
		}
		delete(t.keys, k)
	}
}

// semaphore bounds concurrent work and the number of callers waiting for it.
type semaphore struct {
	slots   chan struct{}
	mu      sync.Mutex
	waiting int
	max     int
}

func newSemaphore(slots, maxWaiting int) *semaphore {
	return &semaphore{slots: make(chan struct{}, slots), max: maxWaiting}
}

// acquire takes a slot, waiting at most wait or until ctx is done. It reports whether it got
// one; the caller then calls release.
func (s *semaphore) acquire(ctx context.Context, wait time.Duration) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	s.mu.Lock()
	if s.waiting >= s.max {
		s.mu.Unlock()
		return false
	}
	s.waiting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

func (s *semaphore) release() { <-s.slots }

// turns bounds the callers in flight per key: logins for one e-mail go ahead together only as
// long as, were they all wrong, they would not take the e-mail past its failure limit. A burst
// against one e-mail therefore runs at most emailFailureLimit comparisons, while several
// correct logins to one account (the seed's load test shares one) run side by side. Its memory
// is bounded by the callers in flight.
type turns struct {
	mu   sync.Mutex
	keys map[string]*turn
}

type turn struct {
	inflight int           // callers that entered and have not left
	waiting  int           // callers waiting to enter
	changed  chan struct{} // closed, and replaced, when a caller leaves
}

func newTurns() *turns { return &turns{keys: map[string]*turn{}} }

// enter waits until may(inflight) is true for key, at most wait or until ctx is done, and
// reports whether it entered; the caller then calls leave. may is called with t's lock held.
func (l *turns) enter(ctx context.Context, key string, wait time.Duration, may func(inflight int) bool) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.keys[key]
	if t == nil {
		t = &turn{changed: make(chan struct{})}
		l.keys[key] = t
	}
	for !may(t.inflight) {
		t.waiting++
		changed := t.changed
		l.mu.Unlock()
		var gaveUp bool
		select {
		case <-changed:
		case <-ctx.Done():
			gaveUp = true
		case <-timer.C:
			gaveUp = true
		}
		l.mu.Lock()
		t.waiting--
		if gaveUp {
			l.forget(key, t)
			return false
		}
	}
	t.inflight++
	return true
}

// leave ends a caller's turn on key and wakes the callers waiting for it.
func (l *turns) leave(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.keys[key]
	t.inflight--
	close(t.changed)
	t.changed = make(chan struct{})
	l.forget(key, t)
}

func (l *turns) forget(key string, t *turn) {
	if t.inflight == 0 && t.waiting == 0 {
		delete(l.keys, key)
	}
}

// checkResult is the outcome of a password check shared by identical logins.
type checkResult int

const (
	checkWrong   checkResult = iota // compared: no match
	checkRight                      // compared: match
	checkBusy                       // no bcrypt slot in time
	checkSkipped                    // the first caller was throttled: no comparison ran
)

// flights lets identical password checks in flight at once share one comparison (a
// singleflight). A result is handed only to the callers waiting for it, never kept.
type flights struct {
	mu sync.Mutex
	m  map[[32]byte]*flight
}

type flight struct {
	done chan struct{}
	res  checkResult
}

func newFlights() *flights { return &flights{m: map[[32]byte]*flight{}} }

// do runs fn for key, or, when a caller is already running it, waits for that result (checkBusy
// if ctx is done first).
func (f *flights) do(ctx context.Context, key [32]byte, fn func() checkResult) checkResult {
	f.mu.Lock()
	if fl := f.m[key]; fl != nil {
		f.mu.Unlock()
		select {
		case <-fl.done:
			return fl.res
		case <-ctx.Done():
			return checkBusy
		}
	}
	fl := &flight{done: make(chan struct{})}
	f.m[key] = fl
	f.mu.Unlock()

	fl.res = fn()
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(fl.done)
	return fl.res
}
