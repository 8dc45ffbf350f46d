// Package pace paces the opening of connections: a token bucket with jitter, so that pools
// coming back together after an outage do not dial in lock step.
package pace

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Defaults of the connection Pacer. A pool that lost every connection (a restart, a failover)
// gets up to DefaultBurst new connections at once and then DefaultRate a second,
// each wait stretched by a random jitter of up to one token interval: a pool of 10 connections
// refills in well under a second, and 100 replicas of a service restarting together open at most
// 400 connections in the first instant and about 100 per 100 ms after that, spread out rather
// than in lock step (3,000 at once unpaced, if each holds 30).
const (
	DefaultRate  = 10.0 // connections per second
	DefaultBurst = 4
)

// Pacer is a token bucket for opening connections, with jitter: wait returns at once while the
// bucket holds a token, otherwise at the moment the next token is due plus a random delay of up
// to jitter, so that pools restarting together do not dial in lock step (synchronized reconnects
// cause TLS handshake storms: PostHog/posthog#49745; startup and recycle storms need different
// fixes: eclipse-vertx/vertx-sql-client#1496). The bucket starts full. A nil *Pacer, or one made
// with a rate <= 0, never waits.
//
// It is meant to run before every connection attempt (pgxpool's BeforeConnect), so failed
// attempts during an outage spend tokens too and the retry loop is paced as well.
//
// Safe for concurrent use.
type Pacer struct {
	rate   float64       // tokens per second; <= 0 turns pacing off
	burst  float64       // bucket size, >= 1
	jitter time.Duration // largest extra delay added to a wait; 0 for none

	mu     sync.Mutex
	tokens float64   // may go negative: tokens reserved by waiters not yet due
	last   time.Time // when tokens was last brought up to date
	rnd    func() float64
}

// New returns a Pacer opening at most burst connections at once and rate a second after
// that, with a jitter of up to one token interval (1/rate). burst < 1 counts as 1.
func New(rate float64, burst int) *Pacer {
	p := &Pacer{rate: rate, burst: max(float64(burst), 1), rnd: rand.Float64}
	p.tokens = p.burst
	if rate > 0 {
		p.jitter = time.Duration(float64(time.Second) / rate)
	}
	return p
}

// Wait takes a token, blocking until one is due (plus jitter) or ctx is done. It returns
// ctx's error, and gives the reserved token back, when ctx ends first; ctx bounds only the
// wait.
func (p *Pacer) Wait(ctx context.Context) error {
	if p == nil || p.rate <= 0 {
		return ctx.Err()
	}
	d := p.reserve()
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		p.refund()
		return ctx.Err()
	}
}

// reserve takes a token and says how long to wait before using it (0: now).
func (p *Pacer) reserve() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !p.last.IsZero() {
		p.tokens = min(p.burst, p.tokens+now.Sub(p.last).Seconds()*p.rate)
	}
	p.last = now
	p.tokens--
	if p.tokens >= 0 {
		return 0
	}
	d := time.Duration(-p.tokens / p.rate * float64(time.Second))
	if p.jitter > 0 {
		d += time.Duration(p.rnd() * float64(p.jitter))
	}
	return d
}

// refund returns a token reserved by a wait that was given up.
func (p *Pacer) refund() {
	p.mu.Lock()
	p.tokens = min(p.burst, p.tokens+1)
	p.mu.Unlock()
}
