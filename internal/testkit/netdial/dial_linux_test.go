package netdial_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testkit/netdial"
)

// sockopts reads the keepalive and user-timeout settings of a dialled connection.
type sockopts struct {
	keepAlive, idle, interval, count, userTimeoutMS int
}

func readSockopts(t *testing.T, c net.Conn) sockopts {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var o sockopts
	var errs []error
	get := func(fd int, level, opt int, dst *int) {
		v, err := syscall.GetsockoptInt(fd, level, opt)
		errs = append(errs, err)
		*dst = v
	}
	err = rc.Control(func(fd uintptr) {
		get(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, &o.keepAlive)
		get(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, &o.idle)
		get(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, &o.interval)
		get(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, &o.count)
		get(int(fd), syscall.IPPROTO_TCP, 0x12 /* TCP_USER_TIMEOUT */, &o.userTimeoutMS)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func TestDialerSetsKeepAliveAndUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tests := []struct {
		name   string
		dialer netdial.Dialer
		want   sockopts
	}{
		{
			name: "keepalive and user timeout",
			dialer: netdial.Dialer{
				KeepAlive:   net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3},
				UserTimeout: 7500 * time.Millisecond,
			},
			want: sockopts{keepAlive: 1, idle: 5, interval: 2, count: 3, userTimeoutMS: 7500},
		},
		{
			name:   "keepalive off, no user timeout",
			dialer: netdial.Dialer{DisableKeepAlive: true},
			want:   sockopts{keepAlive: 0, userTimeoutMS: 0},
		},
		{
			name:   "zero value keeps Go's keepalive defaults",
			dialer: netdial.Dialer{},
			want:   sockopts{keepAlive: 1, idle: 15, interval: 15, count: 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.dialer.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := readSockopts(t, c)
			if !tt.want.keepAliveOff() {
				if got != tt.want {
					t.Fatalf("socket options %+v, want %+v", got, tt.want)
				}
				return
			}
			if got.keepAlive != 0 || got.userTimeoutMS != 0 {
				t.Fatalf("socket options %+v, want keepalive off and no user timeout", got)
			}
		})
	}
}

func (o sockopts) keepAliveOff() bool { return o.keepAlive == 0 }
