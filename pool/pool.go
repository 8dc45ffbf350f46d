package pool

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pace"
	"github.com/pgsteady/pgsteady/retry"
)

// ErrClosed is returned by every method of a closed [Pool]. [retry.MayRetryLater] says true
// for it: a server shutting down its pool is a transient condition for its clients.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string       { return "pool: closed" }
func (closedError) MayRetryLater() bool { return true }

// Pool is a resilient PostgreSQL connection pool on top of [pgxpool.Pool]. It is safe for
// concurrent use. It has pgxpool's query methods, so it satisfies the DBTX interface that sqlc
// generates for pgx/v5. See the package documentation for the contract of each method: what
// it retries, how long it can take, and which errors it returns.
type Pool struct {
	pgx     *pgxpool.Pool
	cfg     config.Config
	policy  retry.Policy // cfg.Retry, with the pool's OnRetry hook and the call budget
	grace   time.Duration
	log     *slog.Logger
	obs     *observers // nil: none
	resolve bool       // resolve lost COMMITs (WithoutCommitResolution turns it off)
	conns   connTable
	stats   counters

	lastConnErr lastConnErr
	budgets     budgets
	budgetText  string // "AcquireTimeout 30s": TimeoutError.Bound when the acquire budget ran out
	logs        logLimiter
	pace        *pace.Pacer  // paces new connections while recovering; nil: never
	recovering  atomic.Int64 // unix nanoseconds until which new connections are paced
	// connectFailedAt (unix nanoseconds): when a connect was refused or unanswered with none
	// working since; 0: a connect worked last. See connectFailed.
	connectFailedAt atomic.Int64
	probing         atomic.Bool // a connect was cut: checking whether the server answers (see connectFailed)
	horizon         horizon
	pingRTT         ewma // successful pre-pings, for the hedge delay
	connectTime     ewma // connections opened, authentication included, for the hedge delay and spikes
	holdTime        ewma // how long callers hold a connection, for spikes (see awaitConn)

	claims        atomic.Int64    // callers sent to take an idle connection (see claimIdle)...
	claimsDone    atomic.Int64    // ... and those of them whose acquire has returned
	opening       atomic.Int64    // callers sent to open a connection beyond Size (see awaitConn)...
	openingDone   atomic.Int64    // ... and those of them whose acquire has returned
	returnWaiters atomic.Int64    // callers waiting in awaitConn
	growing       atomic.Int64    // connections grow is opening for them
	lost          atomic.Int64    // connections destroyed, or that grow failed to open, while callers waited
	returns       atomic.Int64    // connections that came back while callers waited in awaitConn
	returned      chan struct{}   // a connection came back (see returnedOne)
	expect        atomic.Int32    // expectPrimary or expectStandby: whether recovery means failover
	probeCfg      *pgxpool.Config // for connections the pool opens outside pgxpool, to check a suspicion
	life          context.Context // canceled by Close: ends the pool's own background work (keepalive and overflow loops, checks)
	endLife       context.CancelFunc

	closed    atomic.Bool
	closeOnce sync.Once
	bg        sync.WaitGroup // background loops and checks, closes of overflow connections

	stdMu sync.Mutex
	std   []*sql.DB // handed out by StdDB, closed by Close
}

// DefaultCloseGrace is how long [Pool.Close] waits by default for connections that callers
// still hold before it closes their sockets and returns: 5 s, well inside Kubernetes' default
// 30 s termination grace period.
const DefaultCloseGrace = 5 * time.Second

// Option changes how [New] builds a [Pool]. Options are the settings of the pool's machinery
// that no connection string carries (close grace, connect pacing, idle horizon, commit
// resolution, observers, logger); what a connection string or the environment can set, and
// the Retry policy validated with it, is in [config.Config] (its package documentation says
// why).
type Option func(*options)

type options struct {
	paceRate  float64
	paceBurst int
	noResolve bool
	observers []Observer
	horizon   time.Duration
	logger    *slog.Logger
	grace     time.Duration
	pgx       []func(*pgxpool.Config)
}

// WithLogger makes the pool log one line per retry (Info) and per connection destroyed because
// it failed (Warn), with the error class and attempt, and the config's warnings at New.
// Messages never contain the password. Without it the pool logs only the config's warnings
// (to [slog.Default]).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithIdleHorizon fixes the idle horizon instead of learning it: connections idle at least d
// are replaced before use without a ping, and idle connections get TCP keepalive probes (no
// SQL) once idle d/2, so that a NAT or load balancer that drops flows idle d (Azure's load
// balancer: 4 minutes; AWS NAT gateway: 350 s) never gets to. Without it the pool learns the
// horizon from pings that find no answer, and relaxes it when connections idle longer prove
// alive; [Stats.IdleHorizon] shows it.
func WithIdleHorizon(d time.Duration) Option { return func(o *options) { o.horizon = d } }

// WithConnectPacing sets how fast the pool opens connections while it recovers from an
// outage: burst at once, then rate a second, each wait with a random jitter of up to one
// interval, so that many replicas of a service coming back together do not open thousands of
// connections in the same instant (a TLS handshake storm). Default 10 a second after a burst
// of 4; rate <= 0 turns pacing off. Recovery lasts 10 s from a confirmed outage: two connects
// in a row refused (nothing listening), refused at startup (starting up, too many clients) or
// unanswered within the connect timeout, the second begun after the first had failed, none
// working in between (a server down or overloaded, which every replica of a service meets at
// once), or a confirmed failover. A killed backend, a dropped flow, one refusal, or connects
// the network reset while the server answers others are not outages. Outside recovery,
// connections open as fast as callers need.
func WithConnectPacing(rate float64, burst int) Option {
	return func(o *options) { o.paceRate, o.paceBurst = rate, burst }
}

// WithoutCommitResolution makes [Pool.Tx] report every COMMIT whose answer was lost as an
// *[AmbiguousCommitError] without asking the server what became of it, and skip learning the
// transaction id with BEGIN. Use it for servers older than PostgreSQL 13 (no
// pg_current_xact_id) or poolers that refuse the lookup.
func WithoutCommitResolution() Option { return func(o *options) { o.noResolve = true } }

// WithCloseGrace sets how long [Pool.Close] waits for connections that callers still hold
// (unclosed Rows, an acquired connection, a transaction left open) before it closes their
// sockets and returns. Default [DefaultCloseGrace]; a value <= 0 means the default.
func WithCloseGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// WithPgxConfig lets edit change pgx's configuration before the pool is built, for what
// package config does not cover: ConnConfig.Tracer (otelpgx, tracelog), AfterConnect (type
// registration: pgvector, enums), BeforeConnect (a password that rotates: RDS IAM or Entra ID
// tokens), PrepareConn, AfterRelease, BeforeClose, ConnConfig.DialFunc, runtime parameters.
// Several WithPgxConfig options apply in order.
//
// The pool's own hooks are chained with the caller's, never replaced: AfterConnect runs the
// pool's bookkeeping and then the caller's hook (whose error fails the connection, as in
// pgxpool); BeforeClose runs both; the DialFunc the caller sets is kept, and the pool still
// sets TCP_USER_TIMEOUT on the sockets it returns. ShouldPing and PingTimeout belong to the
// pool: the contract's pre-ping and its learning from failed pings rest on them, so [New]
// refuses an edit that sets either. Lifetimes and timeouts set here override the config's; a
// MaxConns set here becomes the pool's limit, and its Size and Overflow follow it.
func WithPgxConfig(edit func(*pgxpool.Config)) Option {
	return func(o *options) { o.pgx = append(o.pgx, edit) }
}

// New builds a pool from cfg, which must come from [config.Parse] or [config.FromEnv] (cfg is
// copied; later changes to it have no effect).
//
// Unless cfg.LazyStart is set, New opens a connection before it returns, retrying with
// cfg.Retry while the error is of class [retry.NotSent] (the server is starting, restarting or
// refusing connections): a database that stays down, a wrong password or an unknown database
// make New fail, and nothing is left running. With cfg.WarmUp it also opens cfg.Size
// connections. ctx bounds this start-up only.
func New(ctx context.Context, cfg *config.Config, opts ...Option) (*Pool, error) {
	o := newOptions(opts)
	if cfg == nil {
		return nil, errors.New("pool: nil config")
	}
	obs, err := observerOf(o.observers)
	if err != nil {
		return nil, err
	}
	pc, err := cfg.PgxPoolConfig()
	if err != nil {
		return nil, err
	}
	// The config's warnings (a channel_binding removed, a SQLAlchemy URL rewritten) are
	// logged even without WithLogger: they say the pool connects differently than the
	// connection string reads.
	warnTo := o.logger
	if warnTo == nil {
		warnTo = slog.Default()
	}
	for _, w := range cfg.Warnings {
		warnTo.WarnContext(ctx, "pgsteady: config: "+w)
	}
	p := &Pool{cfg: *cfg, log: o.logger, grace: o.grace, obs: obs, resolve: !o.noResolve}
	p.life, p.endLife = context.WithCancel(context.Background())
	p.returned = make(chan struct{}, cfg.MaxConns())
	p.connectTime.up = true
	if o.paceRate > 0 {
		p.pace = pace.New(o.paceRate, o.paceBurst)
	}
	if o.horizon > 0 {
		p.horizon.d.Store(int64(o.horizon))
		p.horizon.fixed = true
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.policy = callPolicy(cfg.Retry, cfg.AcquireTimeout)
	p.budgetText = "AcquireTimeout " + cfg.AcquireTimeout.String()
	p.policy.OnRetry = func(attempt int, err error, class retry.Class, delay time.Duration) {
		p.retrying(context.Background(), attempt, err, class, delay)
	}
	if err := p.applyPgxEdits(pc, o.pgx, warnTo); err != nil {
		return nil, err
	}
	p.expect.Store(expectFrom(pc.ConnConfig.ValidateConnect))
	p.install(pc)
	if p.pgx, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("pool: %w", err)
	}
	p.probeCfg = p.pgx.Config()
	p.bg.Go(func() { p.keepAlive(p.life.Done()) })
	if p.cfg.OverflowIdleTimeout > 0 && p.cfg.Overflow > 0 {
		p.bg.Go(func() { p.reapOverflow(p.life.Done()) })
	}
	if cfg.LazyStart {
		return p, nil
	}
	if err := p.start(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// newOptions applies opts to the defaults.
func newOptions(opts []Option) options {
	o := options{grace: DefaultCloseGrace, paceRate: pace.DefaultRate, paceBurst: pace.DefaultBurst}
	for _, opt := range opts {
		opt(&o)
	}
	if o.grace <= 0 {
		o.grace = DefaultCloseGrace
	}
	return o
}

// applyPgxEdits runs the WithPgxConfig edits on pc. ShouldPing and PingTimeout belong to the
// pool (its pre-ping and what it learns from failed pings rest on them): an edit that sets
// them is refused, with the config setting to use instead. A MaxConns set there is the limit
// pgxpool enforces, so the pool's Size and Overflow follow it (Size at most MaxConns, Overflow
// the rest), and Config and Stats say so; a warning names the change.
func (p *Pool) applyPgxEdits(pc *pgxpool.Config, edits []func(*pgxpool.Config), warnTo *slog.Logger) error {
	if len(edits) == 0 {
		return nil
	}
	pc.ShouldPing = nil
	pingTimeout, maxConns := pc.PingTimeout, pc.MaxConns
	for _, edit := range edits {
		edit(pc)
	}
	switch {
	case pc.ShouldPing != nil:
		return errors.New("pool: WithPgxConfig set ShouldPing, which belongs to the pool: choose the pre-ping with the config's PrePing and PrePingAfter (pool_pre_ping)")
	case pc.PingTimeout != pingTimeout:
		return errors.New("pool: WithPgxConfig set PingTimeout, which belongs to the pool: set the config's PingTimeout (pool_ping_timeout) instead")
	}
	if pc.MaxConns != maxConns && pc.MaxConns > 0 {
		n := int(pc.MaxConns)
		p.cfg.Size = min(p.cfg.Size, n)
		p.cfg.Overflow = n - p.cfg.Size
		warnTo.Warn("pgsteady: WithPgxConfig set MaxConns: the pool's limits follow it",
			"max_conns", n, "size", p.cfg.Size, "overflow", p.cfg.Overflow)
	}
	return nil
}

// callPolicy is the retry policy of one call: no retry begins after the call's acquire budget,
// since its connection could not be had anyway. When MaxElapsed is the budget, a call whose
// retries ran into it ends as a *TimeoutError (see call.retry).
func callPolicy(rp retry.Policy, acquireTimeout time.Duration) retry.Policy {
	if rp.MaxElapsed == 0 || rp.MaxElapsed > acquireTimeout {
		rp.MaxElapsed = acquireTimeout
	}
	return rp
}

// start verifies connectivity with the retry policy and, with WarmUp, opens Size connections.
func (p *Pool) start(ctx context.Context) error {
	n := 1
	if p.cfg.WarmUp {
		n = p.cfg.Size
		p.awaitMinConns(ctx)
	}
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			p.giveBack(c, false) // held while the others opened: no caller's hold
		}
	}()
	for range n {
		c, err := p.startConn(ctx)
		if err != nil {
			return fmt.Errorf("pool: start: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

// awaitMinConns waits while pgxpool opens MinConns (Size, with WarmUp) in the background, as it
// does from its construction, so that start's acquires take those connections instead of
// racing them (they did, and opened up to twice Size). It returns once Size are open, once no
// opening is under way (a refused one included: start's own acquires then report it, with
// retries), or at ctx's end or AcquireTimeout.
func (p *Pool) awaitMinConns(ctx context.Context) {
	const look = 5 * time.Millisecond
	deadline := time.Now().Add(p.cfg.AcquireTimeout)
	for i := 0; time.Now().Before(deadline); i++ {
		s := p.pgx.Stat()
		if s.TotalConns()-s.ConstructingConns() >= int32(p.cfg.Size) || (i > 0 && s.ConstructingConns() == 0) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(look):
		}
	}
}

// startConn acquires a connection for New: bounded by ctx and the Retry policy, not by the
// acquire budget of a call, so that a slow cold start still lets New succeed.
func (p *Pool) startConn(ctx context.Context) (c *pgxpool.Conn, err error) {
	rp := p.cfg.Retry.WithRetryOn(retry.Safe)
	rp.OnRetry = p.policy.OnRetry
	err = retry.Do(ctx, rp, func(ctx context.Context) error {
		c, err = p.pgx.Acquire(ctx)
		return err
	})
	return c, err
}

// Close closes the pool: new calls fail with [ErrClosed] at once, idle connections close, and
// Close waits for connections that callers still hold (unclosed Rows, an acquired connection,
// an open transaction, a *sql.DB from [Pool.StdDB], which Close closes) to come back, at most
// the close grace ([WithCloseGrace], default [DefaultCloseGrace]). Past the grace it closes
// their sockets, so that their holders get an error at their next use, and returns; each is
// destroyed when released. Close is idempotent and safe for concurrent use; the pool's own
// background work has ended when it returns (the wait for held connections, if any, ends when
// the last is released).
func (p *Pool) Close() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.budgets.stop() // callers waiting for a connection without a deadline of their own get ErrClosed
		p.endLife()
		p.stdMu.Lock()
		for _, db := range p.std {
			db.Close()
		}
		p.stdMu.Unlock()
		done := make(chan struct{})
		go func() {
			p.pgx.Close()
			close(done)
		}()
		t := time.NewTimer(p.grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			n := 0
			p.conns.m.Range(func(c, _ any) bool {
				hardClose(c.(*pgx.Conn))
				n++
				return true
			})
			p.log.Warn("pgsteady: closed connections still held after the close grace", "grace", p.grace, "connections", n)
		}
		p.bg.Wait()
	})
}

// Config returns a copy of the configuration the pool was built from, with the limits pgxpool
// enforces (a MaxConns set through [WithPgxConfig] shows in Size and Overflow). Like
// [pgxpool.Pool.Config] it is a pointer, so that Config's methods can be called on it; changing
// it changes nothing in the pool.
func (p *Pool) Config() *config.Config {
	c := p.cfg
	return &c
}

// Pgx returns the underlying [pgxpool.Pool], for what pgsteady does not wrap. Work done on it
// directly gets pre-ping, recycling and the overflow limit, but no retries or acquire timeout.
func (p *Pool) Pgx() *pgxpool.Pool { return p.pgx }

// Ping acquires a connection (retrying NotSent errors) and checks it with a round trip.
func (p *Pool) Ping(ctx context.Context) error {
	cl, err := p.call(ctx, retry.Safe, "")
	if err != nil {
		return err
	}
	return cl.run(func() error {
		c, err := cl.acquire()
		if err != nil {
			return err
		}
		defer p.release(c)
		return c.Ping(ctx)
	})
}

// retrying counts, logs and reports a retry of a call whose context is ctx, and calls the
// config's OnRetry hook.
func (p *Pool) retrying(ctx context.Context, attempt int, err error, class retry.Class, delay time.Duration) {
	p.stats.retried(class)
	p.logs.info(ctx, p.log, "pgsteady: retrying", "class", class.String(), "attempt", attempt, "delay", delay, "err", err)
	if p.obs != nil {
		p.obs.Retrying(ctx, RetryEvent{Attempt: attempt, Class: class, Err: err, Delay: delay})
	}
	if p.cfg.Retry.OnRetry != nil {
		p.cfg.Retry.OnRetry(attempt, err, class, delay)
	}
}

// Stat returns pgxpool's own statistics of the underlying pool (acquire counts and durations,
// EmptyAcquireWaitTime, constructing, idle and acquired connections), as
// [pgxpool.Pool.Stat] does. [Pool.Stats] adds the pool's own counters.
func (p *Pool) Stat() *pgxpool.Stat { return p.pgx.Stat() }

// AcquireFunc acquires a connection as [Pool.Acquire] does (acquire budget, retries of
// NotSent), calls f with it and releases it, as [pgxpool.Pool.AcquireFunc] does. f's work is
// not retried; f's error is returned as it is.
func (p *Pool) AcquireFunc(ctx context.Context, f func(*pgxpool.Conn) error) error {
	c, err := p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return f(c)
}

// AcquireAllIdle acquires every idle connection without waiting, as
// [pgxpool.Pool.AcquireAllIdle] does (for example to warm or check them); release each. They
// are not pre-pinged.
func (p *Pool) AcquireAllIdle(ctx context.Context) []*pgxpool.Conn {
	if p.closed.Load() {
		return nil
	}
	conns := p.pgx.AcquireAllIdle(ctx)
	for _, c := range conns {
		p.notIdle(p.conns.get(c.Conn()))
	}
	return conns
}

// Reset closes every idle connection and marks the ones in use to be closed when released, as
// [pgxpool.Pool.Reset] does: use it after changing something every connection must see (a
// rotated password, a failover the pool cannot detect by itself).
func (p *Pool) Reset() { p.pgx.Reset() }
