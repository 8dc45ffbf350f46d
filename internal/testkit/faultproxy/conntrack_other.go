//go:build !linux

package faultproxy

import (
	"errors"
	"time"
)

var errTrackerLinuxOnly = errors.New("faultproxy: a conntrack idle timeout needs Linux")

// NewIdleTimeout fails: a [Tracker] needs Linux network namespaces.
func NewIdleTimeout(target string, idle time.Duration) (*Tracker, error) {
	return nil, errTrackerLinuxOnly
}

// Close does nothing.
func (t *Tracker) Close() error { return nil }

func inNetns(name string, fn func() error) error { return errTrackerLinuxOnly }
