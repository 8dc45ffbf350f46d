package pool_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
)

// Connections beyond Size are closed once idle: at once when given back while Size are idle
// (OverflowIdleTimeout 0, as SQLAlchemy's QueuePool), or after OverflowIdleTimeout.
func TestOverflowConnectionsAreClosedOnceIdle(t *testing.T) {
	for _, tt := range []struct {
		name      string
		idleLimit time.Duration // OverflowIdleTimeout
		wait      time.Duration // after they were given back
	}{
		{"OverflowIdleTimeout 0: closed when given back", 0, 0},
		{"OverflowIdleTimeout 1s: closed after a second idle", time.Second, 2 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := fakeServer(t, func(pgfake.Query) pgfake.Reply { return oneRow })
				p := fakePool(t, s, func(c *config.Config) { c.Size, c.Overflow, c.OverflowIdleTimeout = 1, 2, tt.idleLimit })
				var open []pgx.Rows // each holds a connection until closed
				for range 3 {
					rows, err := p.Query(t.Context(), "SELECT 'x'")
					if err != nil {
						t.Fatal(err)
					}
					open = append(open, rows)
				}
				for _, rows := range open {
					rows.Close()
				}
				time.Sleep(tt.wait)
				synctest.Wait()
				if st := p.Stats(); st.OverflowClosed != 2 || st.TotalConns != 1 || s.Open() != 1 {
					t.Fatalf("OverflowClosed %d, TotalConns %d, open at the server %d; want 2, 1, 1", st.OverflowClosed, st.TotalConns, s.Open())
				}
			})
		})
	}
}
