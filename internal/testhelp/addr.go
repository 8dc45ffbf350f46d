package testhelp

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback address on which nothing listens, so that connecting to it is
// refused at once.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
