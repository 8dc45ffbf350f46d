package testhelp

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Acquirer hands out pooled connections: *pool.Pool and *pgxpool.Pool.
type Acquirer interface {
	Acquire(ctx context.Context) (*pgxpool.Conn, error)
}

// Hold acquires n connections from p and holds them all at once (a pool with fewer idle opens
// the rest), and returns them for the caller to release.
func Hold(t testing.TB, p Acquirer, n int) []*pgxpool.Conn {
	t.Helper()
	held := make([]*pgxpool.Conn, 0, n)
	for range n {
		c, err := p.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	return held
}
