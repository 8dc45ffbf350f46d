//go:build !unix

package pool

import "github.com/jackc/pgx/v5"

// suspicious is the peek of peek_unix.go; elsewhere only the idle-time pre-ping applies.
func suspicious(*pgx.Conn) bool { return false }
