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
	// loginMaxWait is the longest a login waits for its turn (for its e-mail, then for a bcrypt
	// slot) before it is answered 503.
	loginMaxWait = 10 * time.Second
)

// bcryptSlots is how many password comparisons run at once: half the CPUs, at least one.
// bcrypt at the default cost takes 80 ms or more of CPU, and a flood of logins must leave
// the other half to everything else.
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

// keyedLock lets one caller at a time hold a key: logins for one e-mail take turns, so that a
// burst against one e-mail runs its comparisons one by one and meets the e-mail's limit after
// at most emailFailureLimit of them. Its memory is bounded by the callers in flight.
type keyedLock struct {
	mu   sync.Mutex
	keys map[string]*keyTurn
}

type keyTurn struct {
	ch   chan struct{}
	refs int
}

func newKeyedLock() *keyedLock { return &keyedLock{keys: map[string]*keyTurn{}} }

// lock takes key, waiting at most wait or until ctx is done. It reports whether it got it; the
// caller then calls unlock.
func (l *keyedLock) lock(ctx context.Context, key string, wait time.Duration) bool {
	l.mu.Lock()
	k := l.keys[key]
	if k == nil {
		k = &keyTurn{ch: make(chan struct{}, 1)}
		l.keys[key] = k
	}
	k.refs++
	l.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case k.ch <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	l.done(key, k)
	return false
}

// unlock gives key back.
func (l *keyedLock) unlock(key string) {
	l.mu.Lock()
	k := l.keys[key]
	l.mu.Unlock()
	<-k.ch
	l.done(key, k)
}

func (l *keyedLock) done(key string, k *keyTurn) {
	l.mu.Lock()
	if k.refs--; k.refs == 0 {
		delete(l.keys, key)
	}
	l.mu.Unlock()
}
