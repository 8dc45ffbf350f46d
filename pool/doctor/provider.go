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

// rule recognises an endpoint: a host name ending in suffix and containing part ("" for
// any), on port (0 for any).
type rule struct {
	suffix, part string
	port         uint16
	endpoint
}

// rules are the endpoints providerOf recognises, the more particular first.
var rules = []rule{
	{".neon.tech", "-pooler.", 0, endpoint{name: "Neon pooled endpoint (PgBouncer, transaction mode)", pooler: true,
		note: "no session state between transactions (SET, LISTEN, session advisory locks, SQL PREPARE); queries wait at most 120 s (query_wait_timeout)"}},
	{".neon.tech", "", 0, endpoint{name: "Neon direct endpoint",
		note: "the compute suspends after 5 minutes without queries (default); a connection used after that gets 57P01 and the next connect waits for the compute to start"}},
	{".pooler.supabase.com", "", 6543, endpoint{name: "Supabase pooler (Supavisor), transaction mode", pooler: true,
		note: "no session state between transactions"}},
	{".pooler.supabase.com", "", 0, endpoint{name: "Supabase pooler (Supavisor), session mode",
		note: "one server connection per client connection; a full pool answers \"Max client connections reached\" after a minute"}},
	{".supabase.co", "", 0, endpoint{name: "Supabase direct connection"}},
	{".rds.amazonaws.com", ".proxy-", 0, endpoint{name: "AWS RDS Proxy", pooler: true,
		note: "multiplexes at transaction boundaries and pins a client to one server connection when it uses session state or prepared statements"}},
	{".rds.amazonaws.com", ".cluster-ro-", 0, endpoint{name: "AWS Aurora reader endpoint", readOnly: true,
		note: "reaches a read replica: writes fail with 25006; the name moves between replicas"}},
	{".rds.amazonaws.com", ".cluster-custom-", 0, endpoint{name: "AWS Aurora custom endpoint"}},
	{".rds.amazonaws.com", ".cluster-", 0, endpoint{name: "AWS Aurora cluster (writer) endpoint",
		note: "the name moves to the new writer at a failover (DNS takes 15-20 s); a demoted writer answers writes with 25006"}},
	{".rds.amazonaws.com", "", 0, endpoint{name: "AWS RDS instance"}},
	{".postgres.database.azure.com", "", 6432, endpoint{name: "Azure Database for PostgreSQL, built-in PgBouncer", pooler: true,
		note: "PgBouncer in transaction mode; Azure's load balancer drops flows idle for 4 minutes"}},
	{".postgres.database.azure.com", "", 0, endpoint{name: "Azure Database for PostgreSQL",
		note: "Azure's load balancer drops flows idle for 4 minutes"}},
}

// providerOf recognises the endpoint by its host name and port, as the providers document
// them (rules); ok is false for any other host. Names are compared case-insensitively, without
// a trailing dot.
func providerOf(host string, port uint16) (endpoint, bool) {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, r := range rules {
		if strings.HasSuffix(h, r.suffix) && strings.Contains(h, r.part) && (r.port == 0 || r.port == port) {
			return r.endpoint, true
		}
	}
	return endpoint{}, false
}
