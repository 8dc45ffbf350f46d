package pgharness

import (
	"context"
	"net"
	"sync"
)

// StableName is the host name a [Pair]'s [Resolver] answers for: the name that moves from the old
// primary to the new one at a failover, as a cloud provider's DNS name does. The harness's server
// certificate is valid for it, so sslmode=verify-full works through it.
const StableName = "db.pgsteady.test"

// Resolver is a DNS the test controls, for pgx's ConnConfig.LookupFunc: it answers each name it
// was given with one host:port (pgconn takes the port from the answer, so one name can point at
// servers on different published ports). pgx does no DNS caching of its own (jackc/pgx#913): every
// connect looks the name up again, so a moved name reaches new connections at once while the
// connections already open stay where they are, as with a real DNS change.
//
// IP addresses and "localhost" resolve to themselves; any other name fails as not found, so no
// test reaches a real DNS. Safe for concurrent use.
type Resolver struct {
	mu      sync.Mutex
	addrs   map[string]string
	lookups map[string]int
}

// NewResolver returns a resolver that knows no names yet.
func NewResolver() *Resolver {
	return &Resolver{addrs: map[string]string{}, lookups: map[string]int{}}
}

// Set points name at hostport (for example a [Server.Addr]); "" makes the name unknown again.
func (r *Resolver) Set(name, hostport string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if hostport == "" {
		delete(r.addrs, name)
		return
	}
	r.addrs[name] = hostport
}

// Lookups reports how many times name has been looked up.
func (r *Resolver) Lookups(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lookups[name]
}

// LookupFunc resolves host; its signature is pgconn.LookupFunc's.
func (r *Resolver) LookupFunc(ctx context.Context, host string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if host == "localhost" || net.ParseIP(host) != nil {
		return []string{host}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups[host]++
	if a, ok := r.addrs[host]; ok {
		return []string{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
