package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// BenchmarkRead compares a read through Replica() with the same read through the primary's
// Idempotent(), one at a time, on a fresh pair, and with each server through a bare pgx
// connection: the cluster's routing costs what the differences say.
func BenchmarkRead(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair := startPair(ctx, b)
	c, err := pool.NewCluster(ctx, parse(b, pair.Primary.DSN()), []*config.Config{parse(b, pair.Standby.DSN())})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	connect := func(s *pgharness.Server) *pgx.Conn {
		conn, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	onPrimary, onStandby := connect(pair.Primary), connect(pair.Standby)
	for _, bc := range []struct {
		name string
		read func() error
	}{
		{"replica", func() error { var n int; return c.Replica().QueryRow(ctx, "SELECT 1").Scan(&n) }},
		{"replica, read your writes", func() error {
			var n int
			return c.Replica().QueryRow(pool.WithReadYourWrites(ctx), "SELECT 1").Scan(&n)
		}},
		{"primary", func() error { var n int; return c.Primary().Idempotent().QueryRow(ctx, "SELECT 1").Scan(&n) }},
		// The servers themselves, through one bare pgx connection each.
		{"bare pgx, standby", func() error { var n int; return onStandby.QueryRow(ctx, "SELECT 1").Scan(&n) }},
		{"bare pgx, primary", func() error { var n int; return onPrimary.QueryRow(ctx, "SELECT 1").Scan(&n) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.read(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
