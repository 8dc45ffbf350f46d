package doctor

import (
	"fmt"
	"strings"
	"time"

	"github.com/pgsteady/pgsteady/config"
)

// Idle-flow limits of common network hops, which the pool's keepalive must stay under.
const (
	azureLBIdle = 4 * time.Minute   // Azure load balancer's default idle timeout
	awsNATIdle  = 350 * time.Second // AWS NAT gateway's idle timeout
)

// judgeServer turns what the server said into findings and advice. It is pure.
func judgeServer(cfg *config.Config, s *serverFacts, replicas int, d *diagnosis) {
	if s.VersionNum < 130000 {
		d.add(IDServerVersion, Warn, s.Version+": out of community support")
	} else {
		d.add(IDServerVersion, OK, s.Version)
	}
	judgeRole(s, d)
	judgePooler(cfg, s, d)
	judgeMaxConns(cfg, s, replicas, d)
	judgeTimeouts(cfg, s, d)
}

// judgeRole judges whether the server takes writes.
func judgeRole(s *serverFacts, d *diagnosis) {
	if s.InRecovery {
		d.add(IDStandby, Warn, "the server is a hot standby (pg_is_in_recovery): writes fail with 25006; right only for a read-only pool")
	} else {
		d.add(IDStandby, OK, "the server is a primary (not in recovery)")
	}
	if !s.ReadOnly {
		d.add(IDReadOnly, OK, "transactions are read-write by default")
		return
	}
	level, fix := readOnlyLevel(s.ReadOnlySource)
	d.add(IDReadOnly, Warn, "transactions are read-only by default, set for the "+level+
		" (default_transaction_read_only, source: "+s.ReadOnlySource+"): writes fail with 25006")
	if fix != "" {
		d.advise(IDReadOnly, "default_transaction_read_only", fix,
			"a 25006 from a read-only "+level+" is not a failover: pgsteady returns it at once and retries nothing")
	}
}

// readOnlyLevel names where default_transaction_read_only was set, from its pg_settings
// source, and how to undo it.
func readOnlyLevel(source string) (level, fix string) {
	switch source {
	case "user":
		return "role", "ALTER ROLE <role> RESET default_transaction_read_only, if this service writes"
	case "database":
		return "database", "ALTER DATABASE <db> RESET default_transaction_read_only, if this service writes"
	case "database user":
		return "role in this database", "ALTER ROLE <role> IN DATABASE <db> RESET default_transaction_read_only, if this service writes"
	case "client":
		return "connection", "remove default_transaction_read_only from the connection string's options"
	case "configuration file", "command line", "environment variable", "default":
		return "whole server (as on a fenced or demoted primary)", ""
	}
	return "session (" + source + ")", ""
}

// judgePooler compares the pooler seen with Config.Pooler.
func judgePooler(cfg *config.Config, s *serverFacts, d *diagnosis) {
	set := cfg.Pooler == config.PoolerTransaction
	switch {
	case s.Pooler == "":
		d.add(IDPoolerBehaviour, Warn, "could not check for a transaction pooler: "+s.PoolerEvidence)
	case s.Pooler == "transaction" && set:
		d.add(IDPoolerBehaviour, OK, "a transaction pooler sits in between ("+s.PoolerEvidence+"), and Pooler=transaction")
	case s.Pooler == "transaction":
		d.add(IDPoolerBehaviour, Fail, "a transaction pooler sits in between ("+s.PoolerEvidence+
			") but Pooler=none: pgx's statement cache prepares statements by name, which fail through it")
		d.advise(IDPoolerBehaviour, "pooler", "transaction (add pooler=transaction to the connection string)",
			`prepared statement "stmtcache_..." already exists / does not exist errors on about half the queries; `+
				"session state (SET, LISTEN, advisory locks) does not survive a transaction either")
	case set:
		d.add(IDPoolerBehaviour, OK, "no transaction pooler seen ("+s.PoolerEvidence+"); Pooler=transaction only costs the statement cache")
	default:
		d.add(IDPoolerBehaviour, OK, "no transaction pooler ("+s.PoolerEvidence+")")
	}
}

// judgeMaxConns compares what the service's pools may open with the server's limit.
func judgeMaxConns(cfg *config.Config, s *serverFacts, replicas int, d *diagnosis) {
	need := cfg.MaxConns() * replicas
	avail := s.MaxConnections - s.Reserved
	what := fmt.Sprintf("Size %d + Overflow %d across %d replica(s) = %d connections", cfg.Size, cfg.Overflow, replicas, need)
	limit := fmt.Sprintf("max_connections %d (%d reserved, %d sessions open now)", s.MaxConnections, s.Reserved, s.InUse)
	switch {
	case s.Pooler == "transaction":
		d.add(IDMaxConnections, OK, what+" go to the pooler, which shares the server's "+limit)
	case need > avail:
		d.add(IDMaxConnections, Fail, what+" exceeds "+limit)
		per := max(1, avail/replicas)
		d.advise(IDMaxConnections, "pool_size and max_overflow",
			fmt.Sprintf("at most %d together per replica (or raise max_connections, or put a transaction pooler in between)", per),
			"under load the pools open more connections than the server allows, and connects fail with 53300 too_many_connections")
	case need+s.InUse > avail:
		d.add(IDMaxConnections, Warn, what+" fits "+limit+" only if other clients leave room")
	default:
		d.add(IDMaxConnections, OK, what+" fits "+limit)
	}
}

// judgeTimeouts compares the server's session timeouts with the pool's idle handling.
func judgeTimeouts(cfg *config.Config, s *serverFacts, d *diagnosis) {
	if t, ok := s.durs["idle_session_timeout"]; ok {
		judgeIdleSession(cfg, t, d)
	}
	if t := s.durs["idle_in_transaction_session_timeout"]; t > 0 {
		d.add(IDIdleInTx, OK, "idle_in_transaction_session_timeout "+t.String()+
			": a transaction left waiting between statements longer than that is ended by the server (25P03)")
	} else {
		d.add(IDIdleInTx, OK, "idle_in_transaction_session_timeout off")
	}
	if t := s.durs["statement_timeout"]; t > 0 {
		d.add(IDStatementTimeout, OK, "statement_timeout "+t.String()+": longer statements are canceled (57014, not retried)")
	} else {
		d.add(IDStatementTimeout, OK, "statement_timeout off: a statement runs until the caller's deadline")
	}
}

// judgeIdleSession compares idle_session_timeout t with how long the pool keeps a connection
// idle: up to IdleTimeout plus a health-check period (or Recycle plus its jitter, if less), and
// with WarmUp, Size connections for their whole life.
func judgeIdleSession(cfg *config.Config, t time.Duration, d *diagnosis) {
	if t == 0 {
		d.add(IDIdleSession, OK, "idle_session_timeout off: the server does not close idle sessions")
		return
	}
	life := cfg.Recycle + cfg.RecycleJitter
	keep := min(cfg.IdleTimeout+cfg.HealthCheckPeriod, life)
	setting := "pool_max_conn_idle_time"
	if cfg.WarmUp {
		keep, setting = life, "pool_recycle (WarmUp keeps Size connections for their whole life)"
	}
	if keep < t {
		d.add(IDIdleSession, OK, fmt.Sprintf("the server closes sessions idle %s; the pool closes idle connections before that (within %s)", t, keep))
		return
	}
	window := fmt.Sprintf("the server closes sessions idle %s but the pool keeps idle connections up to %s: connections idle %s-%s are found dead", t, keep, t, keep)
	if cfg.PrePing == config.PrePingNever {
		d.add(IDIdleSession, Fail, window+" by the query that uses them, since PrePing is never")
	} else {
		d.add(IDIdleSession, Warn, window+" (the pre-ping catches them, at the cost of a round trip and a new connection)")
	}
	target := t - cfg.HealthCheckPeriod
	if cfg.WarmUp || target <= 0 {
		target = t / 2
	}
	target = max(target.Truncate(time.Second), time.Second)
	d.advise(IDIdleSession, setting, "below "+t.String()+", e.g. "+target.String(),
		"connections idle longer than "+t.String()+" are closed by the server (57P05) and must be replaced when next used")
}

// judgeKeepAlive compares the pool's TCP keepalive with the idle limits of common network
// hops; it needs no server.
func judgeKeepAlive(cfg *config.Config, d *diagnosis) {
	switch {
	case cfg.KeepAlive < 0:
		d.add(IDKeepAlive, Warn, "TCP keepalive is off: a NAT or load balancer that drops idle flows leaves dead connections that only a ping or a query finds")
		d.advise(IDKeepAlive, "KeepAlive", "30s (the default)",
			"Azure's load balancer drops flows idle 4 minutes and AWS NAT gateways 350 s, without telling either end")
	case cfg.KeepAlive >= azureLBIdle:
		d.add(IDKeepAlive, Warn, "TCP keepalive after "+cfg.KeepAlive.String()+": not below Azure's 4-minute load-balancer idle limit")
		d.advise(IDKeepAlive, "KeepAlive", "under 4 minutes, e.g. 30s (the default)",
			"a flow idle past a hop's limit is dropped silently, and the next use of it waits for the dead-flow bound")
	default:
		hops := []string{"Azure load balancer " + azureLBIdle.String(), "AWS NAT " + awsNATIdle.String()}
		d.add(IDKeepAlive, OK, "TCP keepalive after "+cfg.KeepAlive.String()+", below the idle limits of "+strings.Join(hops, " and "))
	}
}
