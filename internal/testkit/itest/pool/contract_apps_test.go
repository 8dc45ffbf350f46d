package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

// The contract checker plays applications as well as faults: callers whose own mistakes or
// habits look like a fault to a careless pool (a read-only transaction that writes, a role
// whose sessions are read-only, procedures that commit part of their work before a conflict).
// The pool must hand those errors back as they are, and no reaction of the pool (a failover, a
// learned idle horizon) may happen without its confirmation in the logs and in Stats.

// commitThenConflictSQL makes a procedure that stores its key, commits, then fails with a
// deadlock: a batch job's shape. Run twice, it would store its key twice.
const commitThenConflictSQL = `CREATE PROCEDURE commit_then_conflict(k text) LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO writes (key) VALUES (k);
		COMMIT;
		RAISE EXCEPTION 'deadlock after a commit' USING ERRCODE = '40P01';
	END $$`

// readOnlyRolePool opens a pool like cfg's, through the same gate, as a role whose sessions
// are read-only (ALTER ROLE ... SET default_transaction_read_only).
func (r *contractRun) readOnlyRolePool(cfg *config.Config) *pool.Pool {
	roCfg, err := config.Parse(pgharness.WithAddr(readOnlyRole(r.t, r.dsn), r.gate.addr))
	if err != nil {
		r.t.Fatal(err)
	}
	roCfg.Size, roCfg.Overflow, roCfg.PrePing = 1, 1, cfg.PrePing
	roCfg.AcquireTimeout, roCfg.PingTimeout, roCfg.ConnectTimeout, roCfg.KeepAlive = cfg.AcquireTimeout, cfg.PingTimeout, cfg.ConnectTimeout, cfg.KeepAlive
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := pool.New(ctx, roCfg, pool.WithLogger(slog.New(r.logs)))
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// applicationsReadOnly checks the error of a write the application made read-only: it must
// fail, and a 25006 must come back as the permanent error it is.
func applicationsReadOnly(err error) string {
	var re *retry.Error
	switch {
	case err == nil:
		return "a write in a read-only transaction or by a read-only role succeeded"
	case !isCode(err, "25006"):
		return "" // a fault's error came first
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "" // the caller's context ended before the pool could ask the server why
	case retry.MayRetryLater(err):
		return "the application's own read-only error says to come back later"
	case errors.As(err, &re) && re.Class != retry.Permanent:
		return "the application's own read-only error was retried as " + re.Class.String()
	}
	return ""
}

// readOnlyTx runs Pool.Tx with TxOptions{AccessMode: ReadOnly} and a random isolation level; fn
// reads, or writes (the application's mistake).
func (w *worker) readOnlyTx(ctx context.Context, c *call, _ context.CancelFunc) error {
	levels := []pgx.TxIsoLevel{"", pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable}
	opts := pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: levels[w.rng.IntN(len(levels))]}
	if w.rng.IntN(2) == 0 {
		k := w.k()
		var v string
		err := w.r.p.Tx(ctx, opts, func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
		})
		if err == nil && v != "value "+strconv.Itoa(k) {
			c.wrong = fmt.Sprintf("row %d read as %q in a read-only Tx", k, v)
		}
		return err
	}
	c.rename(c.method+" writes", &w.r.mu)
	c.write, c.keys, c.check = writeNone, []string{w.key(c, "")}, applicationsReadOnly
	return w.r.p.Tx(ctx, opts, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", c.keys[0])
		return err
	})
}

// readOnlyRoleExec writes as the read-only role.
func (w *worker) readOnlyRoleExec(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys, c.check = writeNone, []string{w.key(c, "")}, applicationsReadOnly
	_, err := w.r.ro.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", c.keys[0])
	return err
}

// failsAlways checks the error of a call that fails whenever it runs.
func failsAlways(err error) string {
	if err == nil {
		return "a call whose statement always fails returned nil"
	}
	return ""
}

func (w *worker) callCommitThenConflict(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys, c.check = writePart, []string{w.key(c, "")}, failsAlways
	_, err := w.r.p.Exec(ctx, "CALL commit_then_conflict($1)", c.keys[0])
	return err
}

func (w *worker) doCommitThenConflict(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys, c.check = writePart, []string{w.key(c, "")}, failsAlways
	_, err := w.r.p.Exec(ctx, `DO $$ BEGIN INSERT INTO writes (key) VALUES ('`+c.keys[0]+`'); COMMIT;
		RAISE EXCEPTION 'conflict after a commit' USING ERRCODE = '40001'; END $$`)
	return err
}

// checkApplicationErrors makes each application error once more on the healthy target, after
// the faults, and checks that none made its pool open more than one connection (a reconnect
// storm is the pool turning an application's error into an outage).
func (r *contractRun) checkApplicationErrors() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	insert := "INSERT INTO writes (key) VALUES ('never-stored')"
	cases := []struct {
		name string
		p    *pool.Pool
		run  func(p *pool.Pool) error
		want string // SQLSTATE
	}{
		{"a read-only Tx that writes", r.p, func(p *pool.Pool) error {
			return p.Tx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, insert)
				return err
			})
		}, "25006"},
		{"a procedure that commits, then deadlocks", r.p, func(p *pool.Pool) error {
			_, err := p.Exec(ctx, "CALL commit_then_conflict($1)", fmt.Sprintf("s%d-after", r.seed))
			return err
		}, "40P01"},
	}
	if r.ro != nil {
		cases = append(cases, struct {
			name string
			p    *pool.Pool
			run  func(p *pool.Pool) error
			want string
		}{"a write by a read-only role", r.ro, func(p *pool.Pool) error {
			_, err := p.Exec(ctx, insert)
			return err
		}, "25006"})
	}
	// The target heals first: after a restart PgBouncer refuses server logins for
	// server_login_retry (15 s), and a pool may need a moment to replace what faults broke.
	healed := time.Now().Add(pgbouncerLoginRetry + 10*time.Second)
	for _, p := range []*pool.Pool{r.p, r.ro} {
		for p != nil && time.Now().Before(healed) {
			var v string
			if p.Idempotent().QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v) == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, tc := range cases {
		var err error
		for range 3 { // until the connections the faults left dead are gone
			var v string
			tc.p.Idempotent().QueryRow(ctx, "SELECT v FROM kv WHERE k = 1").Scan(&v)
			before := tc.p.Stats()
			err = tc.run(tc.p)
			if !isCode(err, tc.want) {
				continue
			}
			if n := tc.p.Stats().Opened - before.Opened; n > 1 {
				r.violate("%s made the pool open %d connections, want at most 1", tc.name, n)
			}
			break
		}
		if !isCode(err, tc.want) {
			r.violate("%s on the healthy target: %v, want SQLSTATE %s", tc.name, err, tc.want)
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, &call{worker: -1, method: "CALL (commits, then deadlock) after the faults", began: r.began,
		start: time.Now(), end: time.Now(), err: errors.New("deadlock"), write: writePart, keys: []string{fmt.Sprintf("s%d-after", r.seed)}})
	r.mu.Unlock()
	if n := r.stored(fmt.Sprintf("s%d-after", r.seed)); n != 1 {
		r.violate("the procedure that commits then deadlocks stored its key %d times, want 1", n)
	}
}

// outageFault names a fault of the schedule during which new connects could be refused or go
// unanswered for a connect timeout (the outages connect pacing is for), or "" if every fault
// left them answered: killed backends, idle-session timeouts, flows reset, dropped or
// black-holed while new ones pass, stalls shorter than ConnectTimeout ended by resets.
func (r *contractRun) outageFault() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.faults {
		switch f.kind {
		case "restart server", "pause server", "refuse connections", "server gone", "host vanished", "slow responses":
			return f.kind
		case "stall then reset":
			if f.end.Sub(f.start) >= r.cfg.ConnectTimeout {
				return f.kind
			}
		}
	}
	return ""
}

// stored counts the rows of writes with key.
func (r *contractRun) stored(key string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n int
	if err := r.p.QueryRow(ctx, "SELECT count(*) FROM writes WHERE key = $1", key).Scan(&n); err != nil {
		r.violate("counting %s: %v", key, err)
	}
	return n
}

// checkReactions holds the pool's reactions to their confirmations: the schedule has no
// failover, so no pool may have believed one; every idle horizon learned was confirmed by a
// fresh connection, as its log line says; connections were paced only after a logged outage,
// and only in a schedule with one.
func (r *contractRun) checkReactions() {
	for _, p := range []*pool.Pool{r.p, r.ro} {
		if p == nil {
			continue
		}
		if st := p.Stats(); st.Failovers != 0 {
			r.violate("Stats: %d failovers believed, and the schedule has none", st.Failovers)
		}
	}
	learned := r.p.Stats().HorizonsLearned
	if r.ro != nil {
		learned += r.ro.Stats().HorizonsLearned
	}
	if logged := r.logs.count("pgsteady: learned an idle horizon", "confirmed_by"); logged != learned {
		r.violate("Stats say %d idle horizons learned, the logs confirm %d", learned, logged)
	}
	if st := r.p.Stats(); st.Paced > 0 && r.logs.count("pgsteady: pacing new connections", "confirmed_by") == 0 {
		r.violate("Stats say %d connections were paced, and no log line says what confirmed the outage", st.Paced)
	}
	if outage := r.outageFault(); outage == "" {
		for _, p := range []*pool.Pool{r.p, r.ro} {
			if p != nil && p.Stats().Paced > 0 {
				r.violate("Stats say %d connections were paced, and the schedule had no outage: every fault left new connects answered", p.Stats().Paced)
			}
		}
	}
	if n := r.logs.count("pgsteady: failover confirmed", ""); n != 0 {
		r.violate("the logs confirm %d failovers, and the schedule has none", n)
	}
}

// checkPings holds the hedged pre-ping to its promise, by counts: no caller waited a whole
// PingTimeout for a pre-ping where the hedge delay was shorter (Stats.PingTimeoutWaits; a
// caller may wait it where slow connects or pings made the hedge delay reach it). And every
// failed pre-ping was either answered or hedged: each failed one was reported once, and each
// connection closed for its pre-ping is one whose caller saw the ping fail, or one given up
// after the hedge delay, so that FailedPings <= those closed <= FailedPings + HedgedPings (the
// difference: hedged pings answered late). st is the pool's Stats after Close.
func (r *contractRun) checkPings(st pool.Stats) {
	if st.PingTimeoutWaits != 0 {
		r.violate("Stats: %d callers waited a whole PingTimeout %v for a pre-ping that the hedge delay, shorter, should have given up (hedged %d, failed %d)",
			st.PingTimeoutWaits, r.cfg.PingTimeout, st.HedgedPings, st.FailedPings)
	}
	if n := r.pings.failed.Load(); n != st.FailedPings {
		r.violate("Stats say %d pre-pings failed, the observer was told of %d", st.FailedPings, n)
	}
	if n := r.pings.closed.Load(); n < st.FailedPings || n > st.FailedPings+st.HedgedPings {
		r.violate("%d connections closed for a failed pre-ping; want from FailedPings %d to FailedPings + HedgedPings %d",
			n, st.FailedPings, st.FailedPings+st.HedgedPings)
	}
}

// pingLedger is an Observer that counts the failed pre-pings and the connections closed for
// one.
type pingLedger struct {
	pool.BaseObserver
	failed, closed atomic.Int64
}

func (l *pingLedger) PingFailed(context.Context, pool.PingEvent) { l.failed.Add(1) }

func (l *pingLedger) ConnClosed(_ context.Context, e pool.CloseEvent) {
	if e.Reason == pool.ClosePingFailed {
		l.closed.Add(1)
	}
}

// holdWaiters holds every connection of the pool and makes two callers wait for one with
// contexts that never end; Close must end their wait (with ErrClosed, or at their bound).
func (r *contractRun) holdWaiters() held {
	nothing := held{what: "nothing", release: func() {}, after: func(*contractRun) {}}
	var conns []*pgxpool.Conn
	var once sync.Once
	release := func() {
		once.Do(func() {
			for _, c := range conns {
				c.Release()
			}
		})
	}
	for range r.cfg.MaxConns() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := r.p.Acquire(ctx)
		cancel()
		if err != nil {
			r.t.Logf("holding every connection: %v", err)
			release()
			return nothing
		}
		conns = append(conns, c)
	}
	results := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := r.p.Exec(context.Background(), "SELECT 1")
			results <- err
		}()
	}
	for i := 0; i < 100 && r.p.Stats().Waiting < 2; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	return held{what: "callers waiting", release: release, after: func(r *contractRun) {
		for range 2 {
			select {
			case err := <-results:
				if !errors.Is(err, pool.ErrClosed) && !errors.Is(err, pool.ErrPoolTimeout) {
					r.violate("a caller waiting for a connection when Close began got %v, want ErrClosed or a timeout", err)
				}
			case <-time.After(r.cfg.AcquireTimeout + *contractSlack):
				r.violate("a caller waiting without a deadline when Close began had not returned %v after Close", r.cfg.AcquireTimeout+*contractSlack)
			}
		}
		r.noPanic("releasing connections held across Close", release)
	}}
}

// reactionLog is a slog.Handler that counts the pool's lines by message and attribute.
type reactionLog struct {
	mu    sync.Mutex
	lines []reactionLine
}

type reactionLine struct {
	msg   string
	attrs map[string]bool
}

func (l *reactionLog) Enabled(context.Context, slog.Level) bool { return true }

func (l *reactionLog) Handle(_ context.Context, rec slog.Record) error {
	line := reactionLine{msg: rec.Message, attrs: map[string]bool{}}
	rec.Attrs(func(a slog.Attr) bool {
		line.attrs[a.Key] = true
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l *reactionLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *reactionLog) WithGroup(string) slog.Handler      { return l }

// count is the number of lines whose message starts with prefix and, unless attr is "",
// that carry attr.
func (l *reactionLog) count(prefix, attr string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n int64
	for _, line := range l.lines {
		if strings.HasPrefix(line.msg, prefix) && (attr == "" || line.attrs[attr]) {
			n++
		}
	}
	return n
}
