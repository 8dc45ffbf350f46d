//go:build unix

package pool

import (
	"crypto/tls"
	"errors"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// peeker looks into a connection's socket without consuming anything. It is set up once per
// connection so that a peek allocates nothing; it is used by one goroutine at a time (the one
// acquiring the connection).
//
// It goes through RawConn.Control, not RawConn.Read: pgconn may leave a background read
// pending on an idle connection (its reader for slow writes stops only after a read returns),
// and RawConn.Read would wait for that read's lock until the server next sent something.
type peeker struct {
	rc   syscall.RawConn
	buf  [1]byte
	err  error
	peek func(fd uintptr)
}

func newPeeker(c *pgx.Conn) peeker {
	nc := c.PgConn().Conn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	var p peeker
	if sc, ok := nc.(syscall.Conn); ok {
		p.rc, _ = sc.SyscallConn()
	}
	return p
}

// suspicious reports whether an idle connection's socket holds anything: bytes (an idle
// PostgreSQL connection is silent unless the server is saying goodbye, or notifying) or an
// end of stream. It costs one non-blocking recv(MSG_PEEK).
func (p *peeker) suspicious() bool {
	if p.rc == nil {
		return false
	}
	if p.peek == nil {
		p.peek = func(fd uintptr) {
			_, _, p.err = syscall.Recvfrom(int(fd), p.buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		}
	}
	if err := p.rc.Control(p.peek); err != nil {
		return true
	}
	// EAGAIN: nothing to read, the connection looks alive. Anything else (data, an end of
	// stream, an error) deserves a ping.
	return !errors.Is(p.err, syscall.EAGAIN) && !errors.Is(p.err, syscall.EINTR)
}
