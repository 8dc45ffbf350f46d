package pool_test

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/pool"
)

// DBTX is the interface sqlc generates for pgx/v5 when a query file has a :copyfrom query
// (without one, the same minus CopyFrom).
type DBTX interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

var (
	_ DBTX = (*pool.Pool)(nil)
	_ DBTX = pool.Querier{}
	_ DBTX = (*pool.Cluster)(nil)
	_ DBTX = pool.Reader{}
)
