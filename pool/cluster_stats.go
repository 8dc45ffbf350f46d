package pool

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// clusterCounters are a Cluster's own event counts.
type clusterCounters struct {
	checks           atomic.Int64 // rounds of checks
	askedChecks      atomic.Int64 // rounds that reads asked for
	promotions       atomic.Int64
	followed         atomic.Int64 // writes run again on a new primary
	fallbacks        atomic.Int64 // reads that failed on a replica and moved on
	primaryNoReplica atomic.Int64 // reads sent to the primary: no replica qualified
	primaryForWrites atomic.Int64 // read-your-writes reads sent to the primary: no replica past the last write
	tracked          atomic.Int64 // writes whose WAL position was read
	untracked        atomic.Int64 // writes whose WAL position could not be read
}

// Member roles in [MemberStats].
const (
	RolePrimary  = "primary"  // takes the writes
	RoleReplica  = "replica"  // in recovery: may take reads
	RoleDetached = "detached" // answers out of recovery, but is not the primary (a former primary kept writable): takes nothing
	RoleUnknown  = "unknown"  // no check has answered yet
)

// ClusterStats is a snapshot of a [Cluster].
type ClusterStats struct {
	Members []MemberStats `json:"members"` // the primary as given first, then the replicas

	Checks                int64  `json:"checks"`                   // rounds of lag checks (one query per member each)
	ChecksAskedByReads    int64  `json:"checks_asked_by_reads"`    // of which: asked for by read-your-writes reads that found no replica past the last write
	Promotions            int64  `json:"promotions"`               // replicas that became the primary
	WritesFollowed        int64  `json:"writes_followed"`          // writes that had not applied on the former primary when it changed, run again on the new one
	ReplicaFallbacks      int64  `json:"replica_fallbacks"`        // reads that failed on a replica and moved to another member
	PrimaryReadsNoReplica int64  `json:"primary_reads_no_replica"` // reads served by the primary because no replica qualified
	PrimaryReadsForWrites int64  `json:"primary_reads_for_writes"` // read-your-writes reads served by the primary because no replica had replayed the last write
	WritesTracked         int64  `json:"writes_tracked"`           // writes whose WAL position was read for read-your-writes
	WritesUntracked       int64  `json:"writes_untracked"`         // writes whose WAL position could not be read
	LastWriteLSN          string `json:"last_write_lsn"`           // the highest WAL position read after a write, as PostgreSQL prints it
}

// MemberStats is one member of a [ClusterStats].
type MemberStats struct {
	Addr     string `json:"addr"`      // host:port
	Role     string `json:"role"`      // RolePrimary, RoleReplica, RoleDetached or RoleUnknown
	Healthy  bool   `json:"healthy"`   // the last check answered and no read failed on it since
	Readable bool   `json:"readable"`  // a replica that takes reads now: healthy and within the lag bound
	LSN      string `json:"lsn"`       // replayed (replica) or written (primary) WAL position at the last check
	LagBytes int64  `json:"lag_bytes"` // how far a replica's replay was behind the primary at the last check; -1 for the primary or when unknown
	// LagTime is the age of the last transaction a lagging replica replayed
	// (pg_last_xact_replay_timestamp); 0 when it had replayed everything: an idle primary
	// makes the age grow without any lag.
	LagTime       time.Duration `json:"lag_time_ns"`
	Reads         int64         `json:"reads"`          // reads it served
	ReadFailures  int64         `json:"read_failures"`  // reads that failed on it and moved to another member
	InFlight      int64         `json:"in_flight"`      // reads running on it now
	CheckFailures int64         `json:"check_failures"` // lag checks that failed
	ChecksBusy    int64         `json:"checks_busy"`    // lag checks skipped because its pool had no free connection
	CheckTime     time.Duration `json:"check_time_ns"`  // time spent in its lag checks, all told (divide by Checks for one)
	Pool          Stats         `json:"pool"`           // its pool's own Stats
}

// Stats returns a snapshot of the cluster and of each member.
func (c *Cluster) Stats() ClusterStats {
	prim := c.primary.Load()
	s := ClusterStats{
		Checks:                c.stats.checks.Load(),
		ChecksAskedByReads:    c.stats.askedChecks.Load(),
		Promotions:            c.stats.promotions.Load(),
		WritesFollowed:        c.stats.followed.Load(),
		ReplicaFallbacks:      c.stats.fallbacks.Load(),
		PrimaryReadsNoReplica: c.stats.primaryNoReplica.Load(),
		PrimaryReadsForWrites: c.stats.primaryForWrites.Load(),
		WritesTracked:         c.stats.tracked.Load(),
		WritesUntracked:       c.stats.untracked.Load(),
		LastWriteLSN:          formatLSN(c.writes.lsn.Load()),
	}
	for _, m := range c.members {
		role := RoleUnknown
		switch {
		case m == prim:
			role = RolePrimary
		case !m.checked.Load():
		case m.recovery.Load():
			role = RoleReplica
		default:
			role = RoleDetached
		}
		s.Members = append(s.Members, MemberStats{
			Addr:          m.addr,
			Role:          role,
			Healthy:       m.ok.Load(),
			Readable:      m != prim && c.readable(m, 0),
			LSN:           formatLSN(m.lsn.Load()),
			LagBytes:      m.lag.Load(),
			LagTime:       time.Duration(m.lagTime.Load()),
			Reads:         m.reads.Load(),
			ReadFailures:  m.readFails.Load(),
			InFlight:      m.inflight.Load(),
			CheckFailures: m.checkFails.Load(),
			ChecksBusy:    m.checkBusy.Load(),
			CheckTime:     time.Duration(m.checkTime.Load()),
			Pool:          m.pool.Stats(),
		})
	}
	return s
}

// formatLSN prints a WAL position as PostgreSQL does ("16/B374D848"); "" for an unknown one.
func formatLSN(lsn int64) string {
	if lsn < 0 {
		return ""
	}
	return fmt.Sprintf("%X/%X", uint64(lsn)>>32, uint32(lsn))
}

// DebugHandler serves [Cluster.Stats] as JSON. It does no authentication: mount it behind yours.
func (c *Cluster) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(c.Stats())
	})
}
