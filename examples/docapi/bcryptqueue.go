package main

import (
	"context"
	"slices"
	"sync"
	"time"
)

// fairQueue hands out the bcrypt slots. Waiting logins queue per client address, and a freed
// slot goes to the addresses in turn (round robin), so that an address sending many logins
// waits behind its own, not in front of everyone's; logins from a client known to their
// e-mail (knownClients) have a queue of their own, served first. It bounds the waiting logins
// in all and per address. It is safe for concurrent use.
type fairQueue struct {
	mu         sync.Mutex
	free       int // slots free
	maxWaiting int
	perAddr    int
	waiting    int
	queues     map[string][]*waiter // per address, oldest first
	order      []string             // the addresses with waiters, in turn
	priority   []*waiter

	grants      int64 // slots granted so far
	knownWaited int64 // known logins that waited in the priority queue
	knownPassed int64 // the most slots granted to others while a known login waited
}

type waiter struct {
	ready   chan struct{} // closed when granted
	granted bool          // under mu
	mark    int64         // q.grants when a known login began to wait
}

// queueResult is the outcome of fairQueue.acquire.
type queueResult int

const (
	queueGranted   queueResult = iota // a slot: call release
	queueBusy                         // no slot in time, or too many waiting in all
	queueOverShare                    // the address already has perAddr logins waiting
)

func newFairQueue(slots, maxWaiting, perAddr int) *fairQueue {
	return &fairQueue{free: slots, maxWaiting: maxWaiting, perAddr: perAddr, queues: map[string][]*waiter{}}
}

// acquire takes a slot for addr, waiting at most wait or until ctx is done; known logins wait
// in the priority queue, and are not bound by the address's share.
func (q *fairQueue) acquire(ctx context.Context, addr string, known bool, wait time.Duration) queueResult {
	q.mu.Lock()
	if q.free > 0 && q.waiting == 0 {
		q.free--
		q.grants++
		q.mu.Unlock()
		return queueGranted
	}
	if q.waiting >= q.maxWaiting {
		q.mu.Unlock()
		return queueBusy
	}
	if !known && len(q.queues[addr]) >= q.perAddr {
		q.mu.Unlock()
		return queueOverShare
	}
	w := &waiter{ready: make(chan struct{})}
	q.waiting++
	if known {
		w.mark = q.grants
		q.knownWaited++
		q.priority = append(q.priority, w)
	} else {
		if len(q.queues[addr]) == 0 {
			q.order = append(q.order, addr)
		}
		q.queues[addr] = append(q.queues[addr], w)
	}
	q.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return queueGranted
	case <-ctx.Done():
	case <-t.C:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.granted { // granted as it gave up: keep the slot
		return queueGranted
	}
	q.waiting--
	if known {
		q.priority = slices.DeleteFunc(q.priority, func(o *waiter) bool { return o == w })
		return queueBusy
	}
	q.queues[addr] = slices.DeleteFunc(q.queues[addr], func(o *waiter) bool { return o == w })
	if len(q.queues[addr]) == 0 {
		delete(q.queues, addr)
		q.order = slices.DeleteFunc(q.order, func(a string) bool { return a == addr })
	}
	return queueBusy
}

// release frees a slot: the next waiter gets it.
func (q *fairQueue) release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	var w *waiter
	switch {
	case len(q.priority) > 0:
		w, q.priority = q.priority[0], q.priority[1:]
		q.knownPassed = max(q.knownPassed, q.grants-w.mark)
	case len(q.order) > 0:
		addr := q.order[0]
		w = q.queues[addr][0]
		q.order = q.order[1:]
		if rest := q.queues[addr][1:]; len(rest) > 0 {
			q.queues[addr] = rest
			q.order = append(q.order, addr)
		} else {
			delete(q.queues, addr)
		}
	default:
		q.free++
		return
	}
	q.waiting--
	q.grants++
	w.granted = true
	close(w.ready)
}

// known says how many known logins waited in the priority queue, and the most slots granted to
// others while one of them waited.
func (q *fairQueue) known() (waited, passed int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.knownWaited, q.knownPassed
}
