//go:build !linux

package pgharness

import "syscall"

// serverProcAttr puts a cluster process in its own process group (a Ctrl-C at the terminal
// reaches the harness, which then shuts the server down in order) and runs it as cred when not
// nil. Outside Linux there is no parent-death signal: a harness killed outright leaves its
// server running until the next start sweeps it away (see sweepStaleClusters).
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
