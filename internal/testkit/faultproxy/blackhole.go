package faultproxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// HoleMode says which flows a [Hole] swallows.
type HoleMode int

const (
	// DropAll drops every TCP packet to or from the port: open flows stall without a RST or a
	// FIN, and new connects time out (the host has vanished from the network).
	DropAll HoleMode = iota

	// DropExisting drops the packets of the flows open when the hole was made and lets new
	// connections through: a NAT or load balancer that has forgotten its old flows.
	DropExisting
)

// Hole is a packet-level black hole in the kernel: nftables rules on the loopback interface
// that drop TCP packets to or from one 127.0.0.1 port, beside the userspace proxy's faults.
// Unlike [Proxy.BlackholeIdle] it acts on TCP segments, so the kernel's own mechanisms (keepalive
// probes, retransmissions, TCP_USER_TIMEOUT) meet it as they would a real dead path: nothing is
// acknowledged and nothing is refused. Packets are dropped on the way in (the input hook), not on
// the way out, because a drop on output is reported to the sender as EPERM.
//
// Each hole is its own nftables table, named after the test process, so holes of parallel
// tests and processes do not touch each other; [Hole.Close] deletes it, and tables left by dead
// processes are deleted by the next hole made. It needs the nft command (package nftables) and
// CAP_NET_ADMIN: root, as CI runs. Give each hole a port of its own (a [Proxy]'s, say): every
// flow on the port is affected.
type Hole struct {
	table     string
	closeOnce sync.Once
	closeErr  error
}

const tablePrefix = "pgsteady_"

var holeSeq atomic.Int64

// NewBlackHole installs a hole for TCP port on 127.0.0.1 (both directions), in effect when it
// returns. The caller must [Hole.Close] it.
func NewBlackHole(port int, mode HoleMode) (*Hole, error) {
	h, mark, err := newHole()
	if err != nil {
		return nil, err
	}
	var rules string
	switch mode {
	case DropAll:
		rules = fmt.Sprintf(`
	chain in {
		type filter hook input priority -5; policy accept;
		iifname "lo" tcp dport %[1]d drop
		iifname "lo" tcp sport %[1]d drop
	}`, port)
	case DropExisting:
		rules = markedFlowsOnly(port, mark, "ct state new")
	default:
		return nil, fmt.Errorf("faultproxy: unknown HoleMode %d", mode)
	}
	return h, h.install(rules)
}

// markedFlowsOnly marks the flows to port whose first packet matches match, and drops the
// packets of every other flow to or from port.
func markedFlowsOnly(port int, mark uint32, match string) string {
	return fmt.Sprintf(`
	chain out {
		type filter hook output priority -140; policy accept;
		oifname "lo" tcp dport %[1]d %[3]s ct mark set %#[2]x
	}
	chain in {
		type filter hook input priority -5; policy accept;
		iifname "lo" tcp dport %[1]d ct mark != %#[2]x drop
		iifname "lo" tcp sport %[1]d ct mark != %#[2]x drop
	}`, port, mark, match)
}

// BlackHole is [NewBlackHole] for a test: it fails tb if the hole cannot be made and closes it
// when tb ends.
func BlackHole(tb testing.TB, port int, mode HoleMode) *Hole {
	tb.Helper()
	h, err := NewBlackHole(port, mode)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// Close removes the hole's rules; packets flow again (a stalled flow recovers if neither side
// has given up on it). It is idempotent.
func (h *Hole) Close() error {
	h.closeOnce.Do(func() { h.closeErr = nft("delete table inet " + h.table) })
	return h.closeErr
}

func newHole() (*Hole, uint32, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, 0, fmt.Errorf("faultproxy: a packet-level black hole needs nft (Debian package nftables; .ci/run installs it): %w", err)
	}
	removeStaleTables()
	n := holeSeq.Add(1)
	h := &Hole{table: tablePrefix + strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(n, 10)}
	// A connection mark of our own, distinct per hole in this process.
	return h, 0x70670000 | uint32(n&0xffff), nil
}

func (h *Hole) install(body string) error {
	if err := nft("table inet " + h.table + " {" + body + "\n}\n"); err != nil {
		return err
	}
	return nil
}

// nft runs an nft script.
func nft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("faultproxy: nft: %w: %s", err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// removeStaleTables deletes the tables of holes whose process no longer exists (a test binary
// that panicked or was killed never reaches its cleanup).
func removeStaleTables() {
	out, err := exec.Command("nft", "list", "tables", "inet").Output()
	if err != nil {
		return
	}
	for line := range strings.Lines(string(out)) {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "table inet "+tablePrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(name, "_")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			nft("delete table inet " + tablePrefix + name)
		}
	}
}
