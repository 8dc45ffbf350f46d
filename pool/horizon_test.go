package pool

import (
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
)

func TestDecideWhatToDoWithAConnectionAboutToBeHandedOut(t *testing.T) {
	idleCfg := config.Config{PrePing: config.PrePingIdle, PrePingAfter: time.Second}
	always := config.Config{PrePing: config.PrePingAlways}
	never := config.Config{PrePing: config.PrePingNever}
	const now = int64(100 * time.Hour)
	lastUsed := func(idle time.Duration) int64 { return now - int64(idle) }
	tests := []struct {
		name        string
		cfg         config.Config
		idle        time.Duration
		staleBefore int64
		horizon     time.Duration
		want        check
	}{
		{"busy pool: handed back and out within a millisecond", idleCfg, 500 * time.Microsecond, 0, 0, checkNone},
		{"idle under PrePingAfter: a free peek", idleCfg, 500 * time.Millisecond, 0, 0, checkPeek},
		{"idle past PrePingAfter: a ping", idleCfg, 2 * time.Second, 0, 0, checkPing},
		{"PrePingAlways pings even a busy connection", always, 0, 0, 0, checkPing},
		{"PrePingNever still peeks", never, time.Hour, 0, 0, checkPeek},
		{"last used before a connection that failed its ping: replaced", idleCfg, 2 * time.Second, lastUsed(time.Second), 0, checkReplace},
		{"last used after the failed ping: checked as usual", idleCfg, 500 * time.Millisecond, lastUsed(time.Second), 0, checkPeek},
		{"idle past the horizon: replaced without a ping", idleCfg, 3 * time.Second, 0, 3 * time.Second, checkReplace},
		{"idle under the horizon: pinged as usual", idleCfg, 2 * time.Second, 0, 3 * time.Second, checkPing},
		{"the horizon applies with PrePingNever too", never, 3 * time.Second, 0, 3 * time.Second, checkReplace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decide(&tt.cfg, tt.idle, lastUsed(tt.idle), tt.staleBefore, false, tt.horizon); got != tt.want {
				t.Errorf("decide = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHorizonIsLearnedDownwardsAndRelaxedUpwards(t *testing.T) {
	p := &Pool{cfg: config.Config{KeepAlive: 30 * time.Second}}
	p.log = discard
	ctx := t.Context()
	p.learnHorizon(ctx, 3*time.Second, 0)
	if got := p.horizon.get(); got != 3*time.Second {
		t.Fatalf("after a dead flow idle 3s the horizon is %v", got)
	}
	p.learnHorizon(ctx, 5*time.Second, 0) // a longer idle proves nothing new
	if got := p.horizon.get(); got != 3*time.Second {
		t.Fatalf("a dead flow idle longer moved the horizon to %v", got)
	}
	p.learnHorizon(ctx, 2*time.Second, 0)
	if got := p.horizon.get(); got != 2*time.Second {
		t.Fatalf("a dead flow idle 2s left the horizon at %v", got)
	}
	p.relaxHorizon()
	if got := p.horizon.get(); got != 3*time.Second {
		t.Fatalf("relaxed horizon %v, want half again as long", got)
	}
	for range 20 {
		p.relaxHorizon()
	}
	if got := p.horizon.get(); got != 0 {
		t.Fatalf("a horizon relaxed past the keepalive's reach is %v, want forgotten", got)
	}
	fixed := &Pool{log: discard}
	fixed.horizon.d.Store(int64(time.Minute))
	fixed.horizon.fixed = true
	fixed.learnHorizon(ctx, time.Second, 0)
	fixed.relaxHorizon()
	if got := fixed.horizon.get(); got != time.Minute {
		t.Fatalf("a horizon set by hand moved to %v", got)
	}
}
