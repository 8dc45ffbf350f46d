package config

import (
	"net"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// This file holds the policy that depends on the hosts a connection string names: TLS for
// every host that is not local, and the transaction-pooler endpoints known by name.

// hostAttempt is one connection attempt pgx would make: a host and whether it uses TLS.
type hostAttempt struct {
	host  string
	port  uint16
	tls   bool
	local bool // Unix socket or loopback address
}

// hostsOf lists the attempts of a parsed pgconn config, in pgx's order.
func hostsOf(cfg *pgconn.Config) []hostAttempt {
	all := make([]hostAttempt, 0, 1+len(cfg.Fallbacks))
	add := func(host string, port uint16, tls bool) {
		all = append(all, hostAttempt{host: host, port: port, tls: tls, local: isLocal(host, port)})
	}
	add(cfg.Host, cfg.Port, cfg.TLSConfig != nil)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.Port, f.TLSConfig != nil)
	}
	return all
}

// isLocal reports whether host is a Unix socket directory or a loopback address.
func isLocal(host string, port uint16) bool {
	if network, _ := pgconn.NetworkAddress(host, port); network == "unix" {
		return true
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	h, _, _ := strings.Cut(host, "%") // IPv6 zone
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// transactionPoolers are the endpoints known, by host name and port, to be poolers in
// transaction mode.
var transactionPoolers = []struct {
	match func(host string) bool
	port  uint16 // 0: any port
}{
	// Neon's pooled endpoints: ep-name-pooler.region.provider.neon.tech.
	{func(h string) bool { return strings.Contains(h, "-pooler.") }, 0},
	// Supabase's pooler (Supavisor): transaction mode on port 6543, session mode on 5432.
	{func(h string) bool { return strings.HasSuffix(h, ".pooler.supabase.com") }, 6543},
}

// behindTransactionPooler reports whether any attempt goes to a known transaction pooler.
func behindTransactionPooler(attempts []hostAttempt) bool {
	for _, a := range attempts {
		host := strings.TrimSuffix(strings.ToLower(a.host), ".")
		for _, p := range transactionPoolers {
			if p.match(host) && (p.port == 0 || p.port == a.port) {
				return true
			}
		}
	}
	return false
}

// requireTLS adds sslmode=require to d when nothing chooses an sslmode and a host is not
// local, and returns the attempts pgx then makes.
func requireTLS(d *dsn, attempts []hostAttempt) ([]hostAttempt, error) {
	if !sslmodeUnset(d) {
		return attempts, nil
	}
	for _, a := range attempts {
		if !a.local {
			d.add("sslmode", "require")
			pc, err := pgconn.ParseConfig(d.String())
			if err != nil {
				return nil, err
			}
			return hostsOf(pc), nil
		}
	}
	return attempts, nil
}

// sslmodeUnset reports whether nothing chooses an sslmode: no sslmode (or URL ssl=) key, no
// PGSSLMODE, and no service file (which could set one).
func sslmodeUnset(d *dsn) bool {
	if d.has("sslmode") || (d.url && d.has("ssl")) || d.has("service") {
		return false
	}
	return os.Getenv("PGSSLMODE") == "" && os.Getenv("PGSERVICE") == ""
}

// insecure returns the non-local hosts that pgx could reach without TLS, with the sslmode
// that does so (read from the attempts, so that it holds wherever the sslmode came from:
// connection string, PGSSLMODE or service file).
func insecure(attempts []hostAttempt) []insecureHost {
	var out []insecureHost
	for i := 0; i < len(attempts); {
		j := i + 1
		for j < len(attempts) && attempts[j].host == attempts[i].host && attempts[j].port == attempts[i].port {
			j++
		}
		run := attempts[i:j]
		i = j
		if mode := plaintextMode(run); mode != "" && !run[0].local {
			out = append(out, insecureHost{host: run[0].host, mode: mode})
		}
	}
	return out
}

// plaintextMode returns the sslmode that pgx's attempts at one server amount to when one of
// them goes without TLS (disable, allow or prefer), or "" when every one uses TLS.
func plaintextMode(run []hostAttempt) string {
	plain, tls := 0, 0
	for _, a := range run {
		if a.tls {
			tls++
		} else {
			plain++
		}
	}
	switch {
	case plain == 0:
		return ""
	case tls == 0:
		return "disable"
	case !run[0].tls:
		return "allow"
	}
	return "prefer"
}
