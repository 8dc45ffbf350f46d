//go:build !unix

package pool

import (
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// peeker is the socket peek of peek_unix.go; elsewhere only the idle-time pre-ping applies.
type peeker struct{}

func newPeeker(*pgx.Conn) peeker { return peeker{} }

func (*peeker) suspicious() bool { return false }
func (*peeker) canHedge() bool   { return false }

func (*peeker) detach() *os.File             { return nil }
func (*peeker) close()                       {}
func (*peeker) keepAliveEvery(time.Duration) {}
