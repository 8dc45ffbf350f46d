package netdial

import (
	"fmt"
	"syscall"
)

// tcpUserTimeout is TCP_USER_TIMEOUT from <linux/tcp.h> (the syscall package lacks it).
const tcpUserTimeout = 0x12

func setUserTimeout(fd uintptr, ms int) error {
	if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms); err != nil {
		return fmt.Errorf("netdial: set TCP_USER_TIMEOUT to %d ms: %w", ms, err)
	}
	return nil
}
