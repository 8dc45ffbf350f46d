package main

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// serverOption changes how newServer builds the server.
type serverOption func(*server)

// withTrustedProxies makes the server take the client address from X-Forwarded-For when the
// peer is one of these proxies (a load balancer or ingress in front of docapi). Without it the
// peer's address is the client's, and X-Forwarded-For is ignored (a client could forge it).
func withTrustedProxies(prefixes []netip.Prefix) serverOption {
	return func(s *server) { s.trustedProxies = prefixes }
}

// withLoginDelay makes every login delay d, the first as the longest (tests: a delay that
// outlasts the test, so that what is delayed does not depend on the clock).
func withLoginDelay(d time.Duration) serverOption {
	return func(s *server) {
		for _, t := range []*throttle{s.emailFailures, s.addrFailures} {
			t.base, t.maxDelay = d, d
		}
	}
}

// withOpsApart leaves /metrics and /debug/pool out of the API: they are served by the
// server's opsHandler, on a listener of their own.
func withOpsApart() serverOption {
	return func(s *server) { s.opsApart = true }
}

// withReadyBudget sets how long the database may fail the readiness check before /readyz
// answers 503. Default: the pool's retry budget, cfg.Retry.MaxElapsed.
func withReadyBudget(d time.Duration) serverOption {
	return func(s *server) { s.readyBudget = d }
}

// parseTrustedProxies reads DOCAPI_TRUSTED_PROXIES: comma-separated addresses or CIDR
// prefixes ("10.0.0.0/8, 127.0.0.1"). Empty is none.
func parseTrustedProxies(v string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if p, err := netip.ParsePrefix(item); err == nil {
			ps = append(ps, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("DOCAPI_TRUSTED_PROXIES: %q is not an address or CIDR prefix", item)
		}
		ps = append(ps, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return ps, nil
}

// parseAdmin reads DOCAPI_USER_ADMIN: true makes the configured user an admin, who reads every
// user's documents. Empty is false.
func parseAdmin(v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("DOCAPI_USER_ADMIN must be true or false, got %q", v)
	}
	return b, nil
}

// clientAddr returns the address a request comes from: the peer's, or, when the peer is a
// trusted proxy, the right-most address of X-Forwarded-For that is not a trusted proxy (those
// to its left could have been written by the client). An IPv6 address is cut to its /64, which
// one client usually holds whole.
func (s *server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if trustedBy(s.trustedProxies, addr) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a forged or garbled hop: stop at the last good one
			}
			addr = a.Unmap()
			if !trustedBy(s.trustedProxies, addr) {
				break
			}
		}
	}
	return addrKey(addr)
}

// fromTrustedProxy reports whether the request's peer is a trusted proxy.
func (s *server) fromTrustedProxy(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && trustedBy(s.trustedProxies, addr.Unmap())
}

// addrKey is the key under which a client address is counted: the address, or, for IPv6, its
// /64, which one client usually holds whole.
func addrKey(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// trustedBy reports whether a is in one of the prefixes.
func trustedBy(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// withUploadQuota sets the bytes of images one user may store (0: no limit).
func withUploadQuota(bytes int64) serverOption {
	return func(s *server) { s.store.quota = bytes }
}

// parseUploadQuota reads DOCAPI_USER_QUOTA_MB: the MiB of images one user may store, a whole
// number >= 0 (0: no limit; empty: defaultUploadQuota).
func parseUploadQuota(env func(string) string) (int64, error) {
	v := env("DOCAPI_USER_QUOTA_MB")
	if v == "" {
		return defaultUploadQuota, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		return 0, fmt.Errorf("DOCAPI_USER_QUOTA_MB must be a whole number of MiB from 0 (no limit) to 1073741824, got %q", v)
	}
	return n << 20, nil
}

// parseConnLimits reads DOCAPI_MAX_CONNS and DOCAPI_MAX_CONNS_PER_ADDR (whole numbers, at
// least 1; empty: defaultMaxConns and defaultMaxConnsPerAddr).
func parseConnLimits(env func(string) string) (connLimits, error) {
	l := connLimits{total: defaultMaxConns, perAddr: defaultMaxConnsPerAddr}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"DOCAPI_MAX_CONNS", &l.total}, {"DOCAPI_MAX_CONNS_PER_ADDR", &l.perAddr}} {
		v := env(f.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return l, fmt.Errorf("%s must be a whole number >= 1, got %q", f.name, v)
		}
		*f.dst = n
	}
	return l, nil
}
