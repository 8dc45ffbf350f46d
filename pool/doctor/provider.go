package doctor

import "strings"

// endpoint is what a host name says about the service behind it.
type endpoint struct {
	// name is the provider and kind of endpoint, for people.
	name string
	// pooler is true for a pooler in transaction mode.
	pooler bool
	// readOnly is true for an endpoint that only reaches read replicas.
	readOnly bool
	// note is what a service author should know about it, or "".
	note string
}

// providerOf recognises the endpoint by its host name and port, as the providers document
// them; ok is false for any other host. Names are compared case-insensitively, without a
// trailing dot.
func providerOf(host string, port uint16) (endpoint, bool) {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	switch {
	case strings.HasSuffix(h, ".neon.tech") && strings.Contains(h, "-pooler."):
		return endpoint{name: "Neon pooled endpoint (PgBouncer, transaction mode)", pooler: true,
			note: "no session state between transactions (SET, LISTEN, session advisory locks, SQL PREPARE); queries wait at most 120 s (query_wait_timeout)"}, true
	case strings.HasSuffix(h, ".neon.tech"):
		return endpoint{name: "Neon direct endpoint",
			note: "the compute suspends after 5 minutes without queries (default); a connection used after that gets 57P01 and the next connect waits for the compute to start"}, true
	case strings.HasSuffix(h, ".pooler.supabase.com") && port == 6543:
		return endpoint{name: "Supabase pooler (Supavisor), transaction mode", pooler: true,
			note: "no session state between transactions"}, true
	case strings.HasSuffix(h, ".pooler.supabase.com"):
		return endpoint{name: "Supabase pooler (Supavisor), session mode",
			note: "one server connection per client connection; a full pool answers \"Max client connections reached\" after a minute"}, true
	case strings.HasSuffix(h, ".supabase.co"):
		return endpoint{name: "Supabase direct connection"}, true
	case strings.HasSuffix(h, ".rds.amazonaws.com") && strings.Contains(h, ".proxy-"):
		return endpoint{name: "AWS RDS Proxy", pooler: true,
			note: "multiplexes at transaction boundaries and pins a client to one server connection when it uses session state or prepared statements"}, true
	case strings.HasSuffix(h, ".rds.amazonaws.com") && strings.Contains(h, ".cluster-ro-"):
		return endpoint{name: "AWS Aurora reader endpoint", readOnly: true,
			note: "reaches a read replica: writes fail with 25006; the name moves between replicas"}, true
	case strings.HasSuffix(h, ".rds.amazonaws.com") && strings.Contains(h, ".cluster-custom-"):
		return endpoint{name: "AWS Aurora custom endpoint"}, true
	case strings.HasSuffix(h, ".rds.amazonaws.com") && strings.Contains(h, ".cluster-"):
		return endpoint{name: "AWS Aurora cluster (writer) endpoint",
			note: "the name moves to the new writer at a failover (DNS takes 15-20 s); a demoted writer answers writes with 25006"}, true
	case strings.HasSuffix(h, ".rds.amazonaws.com"):
		return endpoint{name: "AWS RDS instance"}, true
	case strings.HasSuffix(h, ".postgres.database.azure.com") && port == 6432:
		return endpoint{name: "Azure Database for PostgreSQL, built-in PgBouncer", pooler: true,
			note: "PgBouncer in transaction mode; Azure's load balancer drops flows idle for 4 minutes"}, true
	case strings.HasSuffix(h, ".postgres.database.azure.com"):
		return endpoint{name: "Azure Database for PostgreSQL",
			note: "Azure's load balancer drops flows idle for 4 minutes"}, true
	}
	return endpoint{}, false
}
