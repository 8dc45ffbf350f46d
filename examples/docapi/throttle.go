package main

import (
	"context"
	"runtime"
	"sync"
	"time"
)

// Login abuse limits. A wrong password, or an unknown e-mail, counts as a failure of both the
// e-mail and the client address. Their first failures cost nothing; from the limit on, each
// failure makes the key wait before its next login, a wait that doubles with every failure
// (1 s, 2 s, 4 s, ...) up to a ceiling: an attacker gets a few guesses an hour, and nobody is
// locked out for long. A login that comes too soon is answered 429 with Retry-After, without
// any bcrypt work. A correct password clears the e-mail's failures (not the address's).
//
// The e-mail's delays are not met by a client address that has logged in to that e-mail
// before (knownClients): its failures count apart, so that an attacker who keeps an e-mail
// delayed does not keep its user out. This is OWASP's advice against lockouts that attackers
// can trigger (Authentication Cheat Sheet, "Account Lockout"; "Slow Down Online Guessing
// Attacks with Device Cookies"), with the client address standing in for the device cookie.
const (
	// emailFailureLimit is how many failed logins an e-mail may have before its delays begin.
	emailFailureLimit = 5
	// addrFailureLimit is how many failed logins a client address may have before its delays
	// begin (higher: several users may share an address behind a NAT).
	addrFailureLimit = 20
	// loginDelay is the first delay; each failure past the limit doubles it.
	loginDelay = time.Second
	// emailMaxDelay is the longest delay of an e-mail: 5 minutes.
	emailMaxDelay = 5 * time.Minute
	// addrMaxDelay is the longest delay of a client address: 15 minutes.
	addrMaxDelay = 15 * time.Minute
	// failureWindow is how long failures are remembered after a key's last failure.
	failureWindow = time.Hour
	// knownClientTTL is how long an address that logged in to an e-mail stays known.
	knownClientTTL = 30 * 24 * time.Hour
	// maxThrottleKeys bounds the memory of each throttle, and of the known clients.
	maxThrottleKeys = 100_000

	// bcryptMaxWaiting bounds the logins waiting for a bcrypt slot; more are answered 503 at once.
	bcryptMaxWaiting = 256
	// bcryptWaitingPerAddr bounds the logins of one client address waiting for a bcrypt slot:
	// more are answered 503 at once, and count as failures of the address. Clients known to
	// the e-mail they log in to wait apart, and are served first.
	bcryptWaitingPerAddr = 4
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

// throttle counts failures per key (an e-mail or a client address) and makes a key that has
// failed limit times or more wait, longer with each failure. A key's failures are forgotten
// window after its last one. It is safe for concurrent use.
type throttle struct {
	limit    int
	base     time.Duration // the first delay
	maxDelay time.Duration // the longest
	window   time.Duration
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*failures
}

type failures struct {
	n    int
	last time.Time
}

func newThrottle(limit int, base, maxDelay time.Duration) *throttle {
	return &throttle{limit: limit, base: base, maxDelay: maxDelay, window: failureWindow, now: time.Now, keys: map[string]*failures{}}
}

// delay is the wait after n failures.
func (t *throttle) delay(n int) time.Duration {
	if n < t.limit {
		return 0
	}
	d := t.base
	for i := t.limit; i < n && d < t.maxDelay; i++ {
		d *= 2
	}
	return min(d, t.maxDelay)
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
	if !now.Before(f.last.Add(t.window)) {
		delete(t.keys, key)
		return 0
	}
	return max(0, f.last.Add(t.delay(f.n)).Sub(now))
}

// fail records a failure of key.
func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.keys[key]
	if f == nil || !now.Before(f.last.Add(t.window)) {
		if f == nil && len(t.keys) >= maxThrottleKeys {
			t.evict(now)
		}
		f = &failures{}
		t.keys[key] = f
	}
	f.n++
	f.last = now
}

// count returns key's failures that are still remembered.
func (t *throttle) count(key string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil || !t.now().Before(f.last.Add(t.window)) {
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
		if !now.Before(f.last.Add(t.window)) {
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

// knownClients remembers which client addresses have logged in to which e-mails, for
// knownClientTTL, in at most maxThrottleKeys pairs (beyond, 1 % are dropped at random). It is
// safe for concurrent use.
type knownClients struct {
	mu    sync.Mutex
	now   func() time.Time
	pairs map[string]time.Time // email NUL addr -> last login
}

func newKnownClients() *knownClients {
	return &knownClients{now: time.Now, pairs: map[string]time.Time{}}
}

// key returns the e-mail throttle's key for a login from addr: the e-mail, or, when addr has
// logged in to it before, the pair (whose failures count apart).
func (k *knownClients) key(email, addr string) string {
	pair := email + "\x00" + addr
	k.mu.Lock()
	defer k.mu.Unlock()
	if last, ok := k.pairs[pair]; ok && k.now().Sub(last) < knownClientTTL {
		return pair
	}
	return email
}

// add records a login to email from addr.
func (k *knownClients) add(email, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	pair := email + "\x00" + addr
	if _, ok := k.pairs[pair]; !ok && len(k.pairs) >= maxThrottleKeys {
		n := len(k.pairs)
		for p := range k.pairs {
			if len(k.pairs) <= n-max(1, n/100) {
				break
			}
			delete(k.pairs, p)
		}
	}
	k.pairs[pair] = k.now()
}

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
	checkWrong     checkResult = iota // compared: no match
	checkRight                        // compared: match
	checkBusy                         // no bcrypt slot in time
	checkSkipped                      // the first caller was throttled: no comparison ran
	checkOverShare                    // the first caller's address had its share waiting
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
