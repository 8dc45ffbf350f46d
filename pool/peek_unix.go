//go:build unix

package pool

import (
	"crypto/tls"
	"errors"
	"os"
	"syscall"
	"time"

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
	// dup is a second descriptor of the socket, made when the connection opened: when pgx
	// gives up on a hedged pre-ping it closes its own descriptor, and through this one the
	// pool still sees whether an answer arrives (see Pool.hedge). nil when it could not be
	// made; then pre-pings are not hedged.
	dup *os.File
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
	if fc, ok := nc.(interface{ File() (*os.File, error) }); ok {
		p.dup, _ = fc.File()
	}
	return p
}

// canHedge reports whether a pre-ping of the connection may be hedged: its socket has a
// second descriptor.
func (p *peeker) canHedge() bool { return p.dup != nil }

// detach hands the duplicate descriptor over to the caller, who closes it; nil if there is
// none.
func (p *peeker) detach() *os.File {
	f := p.dup
	p.dup = nil
	return f
}

// close closes the duplicate descriptor, if it is still the peeker's: the socket closes with
// the connection's own descriptor.
func (p *peeker) close() {
	if f := p.detach(); f != nil {
		f.Close()
	}
}

// keepAliveEvery makes the kernel send a TCP keepalive probe each time the flow has been idle
// for d (whole seconds, at least one); d <= 0 changes nothing.
func (p *peeker) keepAliveEvery(d time.Duration) {
	if p.rc != nil && d > 0 {
		p.rc.Control(func(fd uintptr) { setKeepAliveIdle(fd, d) })
	}
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
