package pgharness

import "syscall"

// serverProcAttr puts a cluster process in its own process group (a Ctrl-C at the terminal
// reaches the harness, which then shuts the server down in order), runs it as cred when not
// nil, and, on Linux, has the kernel send it SIGQUIT (immediate shutdown) if the thread that
// started it ends, so that a harness killed outright leaves no server behind.
func serverProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
