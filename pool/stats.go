package pool

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/pgsteady/pgsteady/retry"
)

// counters are the pool's own event counts; pgxpool's Stat supplies the rest.
type counters struct {
	acquireTimeouts   atomic.Int64
	waiting           atomic.Int64
	failedPings       atomic.Int64
	broken            atomic.Int64 // closed because it had failed
	aged              atomic.Int64 // closed by pgxpool for age or idleness, or by Reset
	overflowClosed    atomic.Int64 // connections beyond Size closed for idleness (OverflowIdleTimeout)
	replacedIdle      atomic.Int64 // replaced before use: past the idle horizon or condemned
	hedged            atomic.Int64 // pre-pings given up after the hedge delay for another connection
	pingTimeoutWaits  atomic.Int64 // pre-pings whose caller waited the whole PingTimeout though the hedge delay was shorter
	returnWaits       atomic.Int64 // acquires that waited for a connection to come back before opening one
	horizonChecks     atomic.Int64 // fresh connections opened to check a suspected black hole
	horizonsLearned   atomic.Int64 // horizons learned (or lowered) after such a check
	paced             atomic.Int64 // connections opened while recovering, through the pacer
	failovers         atomic.Int64 // failovers confirmed
	readOnlyErrors    atomic.Int64 // 25006 judged the application's own
	ambiguous         atomic.Int64 // Tx COMMITs whose outcome was lost and stayed unknown
	resolvedCommitted atomic.Int64
	resolvedAborted   atomic.Int64
	retriedNotSent    atomic.Int64
	retriedConnLost   atomic.Int64
	retriedConflict   atomic.Int64
}

func (c *counters) retried(class retry.Class) {
	switch class {
	case retry.NotSent:
		c.retriedNotSent.Add(1)
	case retry.ConnLost:
		c.retriedConnLost.Add(1)
	case retry.Conflict:
		c.retriedConflict.Add(1)
	}
}

// Stats is a snapshot of the pool. Connections are counted in pgxpool's words; the JSON keys
// of the first four are SQLAlchemy QueuePool's, which the /debug/pool endpoint of the service
// pgsteady grew from returned: size, checked_in (IdleConns), checked_out (AcquiredConns) and
// overflow (OverflowConns).
type Stats struct {
	Size          int `json:"size"`        // configured Size
	IdleConns     int `json:"checked_in"`  // idle connections
	AcquiredConns int `json:"checked_out"` // connections in use
	OverflowConns int `json:"overflow"`    // open connections beyond Size
	TotalConns    int `json:"total"`       // open connections (including ones being opened)
	MaxConns      int `json:"max"`         // Size + Overflow
	Waiting       int `json:"waiting"`     // callers waiting for a connection

	AcquireCount    int64       `json:"acquires"`         // connections handed out (pgxpool's AcquireCount: calls, retries, keepalive rounds)
	AcquireTimeouts int64       `json:"acquire_timeouts"` // attempts that ended in ErrPoolTimeout
	Retries         RetryCounts `json:"retries"`          // retries, by error class
	FailedPings     int64       `json:"failed_pings"`     // pre-pings that failed
	Opened          int64       `json:"opened"`           // connections opened
	Recycled        int64       `json:"recycled"`         // closed for age or idleness (Recycle, IdleTimeout), or by Reset
	OverflowClosed  int64       `json:"overflow_closed"`  // connections beyond Size closed after OverflowIdleTimeout idle (with 0: on release while Size were idle)
	Destroyed       int64       `json:"destroyed"`        // closed because they failed
	ReplacedIdle    int64       `json:"replaced_idle"`    // replaced before use without a ping: past the idle horizon, or idle longer than a connection that failed its ping
	ReturnWaits     int64       `json:"return_waits"`     // acquires that found no idle connection and waited briefly for one to come back rather than open one (a burst)
	HedgedPings     int64       `json:"hedged_pings"`     // pre-pings not answered within the hedge delay: the caller went on to another connection, and the slow one was settled in the background (counted in FailedPings if it found no answer)

	// PingTimeoutWaits counts the pre-pings whose caller waited the whole PingTimeout for no
	// answer although the hedge delay was shorter: pre-pings the pool could not hedge, because
	// it watches the answer on a second descriptor of the connection's socket, which it has
	// only on a Unix system, from a DialFunc whose connections have a File method
	// (*net.TCPConn, *net.UnixConn). 0 where hedging works. A caller does wait PingTimeout
	// where the hedge delay reaches it (connects measured to take half PingTimeout or more,
	// or pings an eighth: opening another connection would take as long); those waits are
	// not counted.
	PingTimeoutWaits int64 `json:"ping_timeout_waits"`

	Paced             int64 `json:"paced"`              // connections opened while recovering from an outage, through the pacer
	Failovers         int64 `json:"failovers"`          // failovers confirmed by the server after a 25006 (in recovery, or read-only for every session)
	ReadOnlyErrors    int64 `json:"read_only_errors"`   // 25006 errors that were the application's own (a read-only transaction, role or database, or a standby the pool was meant for): returned, no reaction
	AmbiguousCommits  int64 `json:"ambiguous_commits"`  // Tx COMMITs whose answer was lost and whose outcome stayed unknown (*AmbiguousCommitError)
	ResolvedCommitted int64 `json:"resolved_committed"` // lost COMMIT answers resolved: the transaction had committed
	ResolvedAborted   int64 `json:"resolved_aborted"`   // lost COMMIT answers resolved: it had rolled back, and fn ran again

	HorizonChecks   int64 `json:"horizon_checks"`   // pings that found no answer on a flow idle at least the horizon floor, checked with a fresh connection
	HorizonsLearned int64 `json:"horizons_learned"` // checks that confirmed a black hole (the fresh connection answered promptly) and set or lowered IdleHorizon

	// IdleHorizon is the idle time past which flows are presumed black-holed (learned, or set
	// with WithIdleHorizon); 0 when none is known.
	IdleHorizon time.Duration `json:"idle_horizon_ns"`
}

// RetryCounts counts the retries the pool made, by the [retry.Class] of the error retried.
type RetryCounts struct {
	NotSent  int64 `json:"not_sent"`
	ConnLost int64 `json:"conn_lost"`
	Conflict int64 `json:"conflict"`
}

// Stats returns a snapshot of the pool's state and counters.
func (p *Pool) Stats() Stats {
	s := p.pgx.Stat()
	total := int(s.TotalConns())
	return Stats{
		Size:          p.cfg.Size,
		IdleConns:     int(s.IdleConns()),
		AcquiredConns: int(s.AcquiredConns()),
		OverflowConns: max(0, total-p.cfg.Size),
		TotalConns:    total,
		MaxConns:      p.cfg.MaxConns(),
		Waiting:       int(p.stats.waiting.Load()),
		AcquireCount:  s.AcquireCount(),
		Retries: RetryCounts{
			NotSent:  p.stats.retriedNotSent.Load(),
			ConnLost: p.stats.retriedConnLost.Load(),
			Conflict: p.stats.retriedConflict.Load(),
		},
		AcquireTimeouts:   p.stats.acquireTimeouts.Load(),
		FailedPings:       p.stats.failedPings.Load(),
		Opened:            s.NewConnsCount(),
		Recycled:          p.stats.aged.Load(),
		OverflowClosed:    p.stats.overflowClosed.Load(),
		Destroyed:         p.stats.broken.Load(),
		ReplacedIdle:      p.stats.replacedIdle.Load(),
		HedgedPings:       p.stats.hedged.Load(),
		PingTimeoutWaits:  p.stats.pingTimeoutWaits.Load(),
		ReturnWaits:       p.stats.returnWaits.Load(),
		IdleHorizon:       p.horizon.get(),
		HorizonChecks:     p.stats.horizonChecks.Load(),
		HorizonsLearned:   p.stats.horizonsLearned.Load(),
		Paced:             p.stats.paced.Load(),
		Failovers:         p.stats.failovers.Load(),
		ReadOnlyErrors:    p.stats.readOnlyErrors.Load(),
		AmbiguousCommits:  p.stats.ambiguous.Load(),
		ResolvedCommitted: p.stats.resolvedCommitted.Load(),
		ResolvedAborted:   p.stats.resolvedAborted.Load(),
	}
}

// DebugHandler serves [Pool.Stats] as JSON. It does no authentication: mount it behind yours.
func (p *Pool) DebugHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(p.Stats())
	})
}
