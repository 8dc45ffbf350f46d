package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// trackerRules marks each flow at its SYN and drops the packets of unmarked flows: a flow whose
// tracking entry expired is picked up again mid-stream (nf_conntrack_tcp_loose) without a mark.
const trackerRules = `table inet pgsteady {
	chain out {
		type filter hook output priority -140; policy accept;
		oifname "lo" tcp flags & (syn | ack) == syn ct state new ct mark set 0x7067
	}
	chain in {
		type filter hook input priority -5; policy accept;
		iifname "lo" meta l4proto tcp ct mark != 0x7067 drop
	}
}
`

// NewIdleTimeout starts a [Tracker] forgetting flows idle for longer than idle (whole seconds,
// at least 1), forwarding to target (host:port, reachable from the test process). The caller
// must [Tracker.Close] it.
func NewIdleTimeout(target string, idle time.Duration) (t *Tracker, err error) {
	secs := int(idle / time.Second)
	if secs < 1 || idle%time.Second != 0 {
		return nil, fmt.Errorf("faultproxy: idle timeout must be whole seconds >= 1, got %v", idle)
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("faultproxy: a conntrack idle timeout needs %s (packages iproute2, nftables; .ci/run installs them): %w", tool, err)
		}
	}
	removeStaleNamespaces()
	t = &Tracker{ns: tablePrefix + strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(holeSeq.Add(1), 10)}
	if err := run("", "ip", "netns", "add", t.ns); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			t.Close()
			t = nil
		}
	}()
	steps := [][]string{
		{"ip", "-n", t.ns, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", t.ns, "nft", "-f", "-"},
		{"ip", "netns", "exec", t.ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_established=" + strconv.Itoa(secs)},
		{"ip", "netns", "exec", t.ns, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=1"},
	}
	for i, args := range steps {
		stdin := ""
		if i == 1 {
			stdin = trackerRules
		}
		if err := run(stdin, args[0], args[1:]...); err != nil {
			return t, err
		}
	}
	var ln net.Listener
	if err := inNetns(t.ns, func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		return t, fmt.Errorf("faultproxy: listen in namespace %s: %w", t.ns, err)
	}
	t.proxy = serve(ln, target)
	return t, nil
}

// Close stops the proxy and deletes the namespace. It is idempotent.
func (t *Tracker) Close() error {
	t.closeOnce.Do(func() {
		var errs []error
		if t.proxy != nil {
			errs = append(errs, t.proxy.Close())
		}
		errs = append(errs, run("", "ip", "netns", "del", t.ns))
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// inNetns runs fn on an OS thread switched into the named network namespace; sockets fn creates
// belong to that namespace for good. If the thread cannot be switched back it stays locked, and
// Go ends it with the goroutine.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("faultproxy: %w", err)
	}
	defer self.Close()
	ns, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("faultproxy: %w", err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("faultproxy: enter namespace %s: %w", name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("faultproxy: leave namespace %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

func run(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("faultproxy: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeStaleNamespaces deletes the namespaces of trackers whose process no longer exists.
func removeStaleNamespaces() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, tablePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "_")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			run("", "ip", "netns", "del", name)
		}
	}
}
