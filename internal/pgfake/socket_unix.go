//go:build unix

package pgfake

import (
	"cmp"
	"context"
	"net"
	"os"
	"syscall"
)

// DialSocket is [Server.Dial] over a real socket, a Unix socket pair, instead of net.Pipe: the
// client's end is a *net.UnixConn, whose descriptor can be duplicated (the pool watches a
// hedged pre-ping's late answer on a second descriptor). A goroutine waiting on a real socket
// is not durably blocked for testing/synctest, so a test that dials with it runs in real time.
func (s *Server) DialSocket(ctx context.Context, network, addr string) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	client, cerr := fileConn(fds[0])
	server, serr := fileConn(fds[1])
	if cerr != nil || serr != nil {
		for _, c := range []net.Conn{client, server} {
			if c != nil {
				c.Close()
			}
		}
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: cmp.Or(cerr, serr)}
	}
	return s.accept(client, server)
}

// fileConn makes a net.Conn of the socket fd, which it closes (the conn has its own copy).
func fileConn(fd int) (net.Conn, error) {
	syscall.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "pgfake")
	defer f.Close()
	return net.FileConn(f)
}
