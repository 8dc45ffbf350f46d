package pool

import (
	"testing"
	"time"
)

func TestToOpen(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	for _, tt := range []struct {
		name          string
		waiters, open int64
		hold, connect time.Duration
		want          int64
	}{
		{"a burst on one connection held 1 ms, connect 15 ms: 39 waiters need 2 more, 1 at once", 39, 1, ms, 15 * ms, 1},
		{"a burst on two connections held 5 ms: 13 more needed, still 1 at once", 39, 2, 5 * ms, 15 * ms, 1},
		{"the same burst on four connections: waiting is quicker", 39, 4, ms, 15 * ms, -1},
		{"hold not known yet: wait first", 39, 1, 0, 15 * ms, 0},
		{"held a connect time already: open one for the one waiter", 1, 1, 15 * ms, 15 * ms, 1},
		{"long holds: open, at most doubling", 20, 2, time.Second, 15 * ms, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := toOpen(tt.waiters, tt.open, tt.hold, tt.connect); got != tt.want {
				t.Fatalf("toOpen(%d, %d, %v, %v) = %d, want %d", tt.waiters, tt.open, tt.hold, tt.connect, got, tt.want)
			}
		})
	}
}

func TestHedgeDelay(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	for _, tt := range []struct {
		name                   string
		ping, connect, timeout time.Duration
		want                   time.Duration
	}{
		{"nothing measured: the floor", 0, 0, 2 * time.Second, hedgeFloor},
		{"loopback: the floor", 200 * time.Microsecond, 10 * ms, 2 * time.Second, hedgeFloor},
		{"a cloud database: two connects", 2 * ms, 80 * ms, 2 * time.Second, 160 * ms},
		{"a slow link: eight pings", 30 * ms, 60 * ms, 2 * time.Second, 240 * ms},
		{"never past PingTimeout (then nothing is hedged)", 30 * ms, 600 * ms, time.Second, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := &Pool{}
			p.cfg.PingTimeout = tt.timeout
			p.pingRTT.observe(tt.ping)
			p.connectTime.observe(tt.connect)
			if got := p.hedgeDelay(); got != tt.want {
				t.Fatalf("hedgeDelay() = %v, want %v", got, tt.want)
			}
		})
	}
}
