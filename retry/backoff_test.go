package retry

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
)

func TestBackOffEnvelope(t *testing.T) {
	t.Parallel()
	b := newBackOff(DefaultPolicy().withDefaults(), maxJitter)
	var got []time.Duration
	for range 9 {
		got = append(got, b.NextBackOff())
	}
	if want := ms(25, 50, 100, 200, 400, 800, 1000, 1000, 1000); !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
	b.Reset()
	if d := b.NextBackOff(); d != DefaultInitial {
		t.Errorf("after Reset, wait = %v, want %v", d, DefaultInitial)
	}
}

func TestBackOffFullJitterBounds(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 10 * time.Millisecond, MaxInterval: 80 * time.Millisecond}.withDefaults()
	for run := range 200 {
		b := newBackOff(p, rand.Int64N)
		envelope := p.Initial
		for i := range 8 {
			d := b.NextBackOff()
			if d < 0 || d > envelope {
				t.Fatalf("run %d, wait %d = %v, outside [0, %v]", run, i+1, d, envelope)
			}
			envelope = min(2*envelope, p.MaxInterval)
		}
	}
}

func TestBackOffJitterReachesBothEnds(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: 100 * time.Nanosecond, MaxInterval: 100 * time.Nanosecond}.withDefaults()
	lowest := func(int64) int64 { return 0 }
	if d := newBackOff(p, lowest).NextBackOff(); d != 0 {
		t.Errorf("lowest draw gives %v, want 0", d)
	}
	if d := newBackOff(p, maxJitter).NextBackOff(); d != 100 {
		t.Errorf("highest draw gives %v, want the envelope, 100ns", d)
	}
}

func TestBackOffMaxAttempts(t *testing.T) {
	t.Parallel()
	for _, attempts := range []int{1, 2, 4} {
		p := Policy{MaxAttempts: attempts}.withDefaults()
		b := newBackOff(p, maxJitter)
		waits := 0
		for b.NextBackOff() != backoff.Stop {
			waits++
			if waits > 10 {
				break
			}
		}
		if waits != attempts-1 {
			t.Errorf("MaxAttempts %d: %d waits before Stop, want %d", attempts, waits, attempts-1)
		}
	}
}

func TestBackOffHugeInterval(t *testing.T) {
	t.Parallel()
	p := Policy{Initial: math.MaxInt64, MaxInterval: math.MaxInt64}.withDefaults()
	for range 3 {
		if d := newBackOff(p, rand.Int64N).NextBackOff(); d < 0 {
			t.Fatalf("wait = %v, want >= 0", d)
		}
	}
}
