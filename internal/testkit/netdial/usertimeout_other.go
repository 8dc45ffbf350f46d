//go:build !linux

package netdial

// setUserTimeout does nothing: TCP_USER_TIMEOUT is a Linux option.
func setUserTimeout(fd uintptr, ms int) error { return nil }
