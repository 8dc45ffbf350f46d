package pool

import (
	"testing"
	"time"
)

func TestReapEvery(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		idle time.Duration
		want time.Duration
	}{
		{"default 30 s: once a second", 30 * time.Second, time.Second},
		{"2 s: a quarter", 2 * time.Second, 500 * time.Millisecond},
		{"10 ms: at most every 10 ms", 10 * time.Millisecond, 10 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := reapEvery(tt.idle); got != tt.want {
				t.Fatalf("reapEvery(%v) = %v, want %v", tt.idle, got, tt.want)
			}
		})
	}
}
