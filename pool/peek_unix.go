//go:build unix

package pool

import (
	"crypto/tls"
	"errors"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// suspicious reports whether an idle connection's socket holds anything: bytes (an idle
// PostgreSQL connection is silent unless the server is saying goodbye, or notifying) or an
// end of stream. It costs one non-blocking recv(MSG_PEEK) and consumes nothing.
func suspicious(c *pgx.Conn) bool {
	nc := c.PgConn().Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	var (
		buf  [1]byte
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil {
		return true
	}
	// EAGAIN: nothing to read, the connection looks alive. Anything else (data, n == 0 for an
	// end of stream, an error) deserves a ping.
	return !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR)
}
