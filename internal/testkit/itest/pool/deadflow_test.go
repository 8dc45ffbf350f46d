package pool_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// An idle pooled connection whose flow is black-holed in the kernel (a NAT that forgot it: no
// RST, no FIN) is found dead by TCP keepalive within DeadFlowAfter, before anyone uses it: the
// next request's pre-ping fails at once on the dead socket and a new connection serves it,
// instead of the ping waiting out PingTimeout (which would also teach an idle horizon).
func TestKeepaliveFindsAnIdleDeadFlowBeforeUse(t *testing.T) {
	dsn := freshDB(t)
	proxy := newProxy(t)
	p := newPool(t, pgharness.WithAddr(dsn, proxy.Addr()), func(c *config.Config) {
		c.Size, c.Overflow = 1, 1
		c.KeepAlive = time.Second // DeadFlowAfter: 1 s idle + 3 probes 1 s apart = 4 s
		c.PingTimeout = 5 * time.Second
	})
	if _, err := p.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	faultproxy.BlackHole(t, portN, faultproxy.DropExisting) // new connections pass
	cfg := p.Config()
	dead := cfg.DeadFlowAfter()
	time.Sleep(dead + 2*time.Second)

	if _, err := p.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("Exec after the idle flow died: %v", err)
	}
	st := p.Stats()
	t.Logf("DeadFlowAfter %v; stats: failed pings %d, destroyed %d, horizon %v", dead, st.FailedPings, st.Destroyed, st.IdleHorizon)
	if st.FailedPings+st.Destroyed == 0 {
		t.Fatal("the dead connection was never noticed: the black hole did not happen")
	}
	if st.IdleHorizon != 0 {
		t.Fatalf("the pre-ping waited out its timeout (an idle horizon of %v was learned): keepalive did not find the dead flow first", st.IdleHorizon)
	}
}
