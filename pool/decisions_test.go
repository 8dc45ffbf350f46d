package pool

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestRaiseOnlyMovesForward(t *testing.T) {
	tests := []struct {
		name      string
		from, to  int64
		wantAfter int64
	}{
		{"later instant moves it", 10, 20, 20},
		{"earlier instant leaves it", 20, 10, 20},
		{"same instant leaves it", 20, 20, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a atomic.Int64
			a.Store(tt.from)
			raise(&a, tt.to)
			if got := a.Load(); got != tt.wantAfter {
				t.Fatalf("after raise(%d) from %d: %d, want %d", tt.to, tt.from, got, tt.wantAfter)
			}
		})
	}
	t.Run("concurrent raises keep the largest", func(t *testing.T) {
		var a atomic.Int64
		var wg sync.WaitGroup
		for i := range int64(100) {
			wg.Go(func() { raise(&a, i) })
		}
		wg.Wait()
		if a.Load() != 99 {
			t.Fatalf("got %d, want 99", a.Load())
		}
	})
}

func TestReserveIdleNeverOvershootsSize(t *testing.T) {
	tests := []struct {
		name       string
		idle, size int
		want       bool
	}{
		{"room left", 3, 10, true},
		{"last place", 9, 10, true},
		{"full: the connection is closed instead", 10, 10, false},
		{"Size 0 keeps nothing idle", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var idle atomic.Int64
			idle.Store(int64(tt.idle))
			if got := reserveIdle(&idle, tt.size); got != tt.want {
				t.Fatalf("reserveIdle = %v, want %v", got, tt.want)
			}
			want := int64(tt.idle)
			if tt.want {
				want++
			}
			if idle.Load() != want {
				t.Fatalf("idle = %d, want %d", idle.Load(), want)
			}
		})
	}
	t.Run("concurrent releases", func(t *testing.T) {
		var idle atomic.Int64
		var kept atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if reserveIdle(&idle, 10) {
					kept.Add(1)
				}
			})
		}
		wg.Wait()
		if kept.Load() != 10 || idle.Load() != 10 {
			t.Fatalf("kept %d, idle %d; want 10 and 10", kept.Load(), idle.Load())
		}
	})
}
