package pace

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// paceTimes runs n waits on p from n goroutines started together and returns, sorted by
// goroutine, how long after the start each wait returned (fake time: call inside a bubble).
func paceTimes(t *testing.T, p *Pacer, n int) []time.Duration {
	t.Helper()
	start := time.Now()
	got := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := p.Wait(context.Background()); err != nil {
				t.Errorf("wait: %v", err)
			}
			got[i] = time.Since(start)
		})
	}
	wg.Wait()
	return got
}

func TestPacerSpendsTheBurstAtOnceThenPacesAtTheRate(t *testing.T) {
	tests := []struct {
		name   string
		rate   float64
		burst  int
		jitter float64 // what the random source returns, in [0, 1)
		n      int
		want   []time.Duration // sorted return times
	}{
		{"burst only", 10, 4, 0, 4, []time.Duration{0, 0, 0, 0}},
		{"no jitter", 10, 2, 0, 5, []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}},
		{"half-interval jitter delays only the waits", 10, 1, 0.5, 3, []time.Duration{0, 150 * time.Millisecond, 250 * time.Millisecond}},
		{"burst below 1 counts as 1", 2, 0, 0, 2, []time.Duration{0, 500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := New(tt.rate, tt.burst)
				p.rnd = func() float64 { return tt.jitter }
				got := paceTimes(t, p, tt.n)
				slices.Sort(got)
				for i := range got {
					if got[i] != tt.want[i] {
						t.Fatalf("return times %v, want %v", got, tt.want)
					}
				}
			})
		})
	}
}

func TestPacerJitterSpreadsWaitersWithinOneInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(10, 1) // the real random source
		got := paceTimes(t, p, 50)
		slices.Sort(got)
		// The k-th wait (k >= 1) is due at k*100 ms and returns within one more interval.
		distinct := map[time.Duration]bool{}
		for k, d := range got {
			due := time.Duration(k) * 100 * time.Millisecond
			if d < due || d >= due+100*time.Millisecond {
				t.Fatalf("wait %d returned at %v, want in [%v, %v)", k, d, due, due+100*time.Millisecond)
			}
			distinct[d%(100*time.Millisecond)] = true
		}
		if len(distinct) < 10 {
			t.Fatalf("only %d distinct offsets within the interval among 50 waits: no jitter", len(distinct))
		}
	})
}

func TestPacerNeverExceedsBurstPlusRateInAnyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, burst, n = 10.0, 4, 60
		p := New(rate, burst)
		got := paceTimes(t, p, n)
		slices.Sort(got)
		// A token bucket with jitter of at most one interval: any window of w holds at most
		// burst + rate*(w + interval) returns.
		w := 100 * time.Millisecond
		limit := burst + int(rate*(w+100*time.Millisecond).Seconds())
		for i := range got {
			in := 0
			for j := i; j < len(got) && got[j] < got[i]+w; j++ {
				in++
			}
			if in > limit {
				t.Fatalf("%d connections in the %v from %v, want at most %d", in, w, got[i], limit)
			}
		}
	})
}

func TestPacerRefillsToTheBurstAfterAQuietSpell(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(10, 3)
		p.rnd = func() float64 { return 0 }
		paceTimes(t, p, 3) // empty the bucket
		time.Sleep(time.Hour)
		got := paceTimes(t, p, 4)
		slices.Sort(got)
		want := []time.Duration{0, 0, 0, 100 * time.Millisecond}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("after an hour of quiet: return times %v, want %v (the bucket holds at most 3)", got, want)
			}
		}
	})
}

func TestPacerWaitEndsWithItsContextAndGivesTheTokenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(1, 1)
		p.rnd = func() float64 { return 0 }
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait past its deadline: %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("wait returned after %v, want at the 100 ms deadline", d)
		}
		// The abandoned reservation was returned: the next token is due 1 s after the first.
		start = time.Now()
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 900*time.Millisecond {
			t.Fatalf("next wait took %v, want 900 ms", d)
		}
	})
}

func TestPacerOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for name, p := range map[string]*Pacer{"nil": nil, "rate 0": New(0, 1), "negative rate": New(-1, 1)} {
			start := time.Now()
			for range 1000 {
				if err := p.Wait(context.Background()); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if d := time.Since(start); d != 0 {
				t.Fatalf("%s: 1000 waits took %v, want none", name, d)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := New(0, 1).Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("wait with a cancelled context: %v, want context.Canceled", err)
		}
	})
}

func TestPacerDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		got := paceTimes(t, New(DefaultRate, DefaultBurst), 14)
		slices.Sort(got)
		// The burst at once, 10 more within the next second plus one jitter interval.
		for i, d := range got {
			if i < DefaultBurst && d != 0 || d > 1100*time.Millisecond {
				t.Fatalf("return times %v: want %d at once and all within 1.1 s", got, DefaultBurst)
			}
		}
	})
}
