package pool

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// ErrClosed is returned by every method of a closed [Pool].
var ErrClosed = errors.New("pool: closed")

// Pool is a resilient PostgreSQL connection pool on top of [pgxpool.Pool]. It is safe for
// concurrent use. It has pgxpool's query methods, so it satisfies the DBTX interface that sqlc
// generates for pgx/v5. See the package documentation for the contract of each method: what
// it retries, how long it can take, and which errors it returns.
type Pool struct {
	pgx    *pgxpool.Pool
	cfg    config.Config
	policy retry.Policy // cfg.Retry, with the pool's OnRetry hook and the call budget
	grace  time.Duration
	log    *slog.Logger
	conns  connTable
	stats  counters

	lastConnErr lastConnErr

	closed    atomic.Bool
	closeOnce sync.Once
	bg        sync.WaitGroup // closes of overflow connections

	stdMu sync.Mutex
	std   []*sql.DB // handed out by StdDB, closed by Close
}

// DefaultCloseGrace is how long [Pool.Close] waits by default for connections that callers
// still hold before it closes their sockets and returns: 5 s, well inside Kubernetes' default
// 30 s termination grace period.
const DefaultCloseGrace = 5 * time.Second

// Option changes how [New] builds a [Pool].
type Option func(*options)

type options struct {
	logger *slog.Logger
	grace  time.Duration
	pgx    []func(*pgxpool.Config)
}

// WithLogger makes the pool log one line per retry (Info) and per connection destroyed because
// it failed (Warn), with the error class and attempt. Messages never contain the password.
// Without it the pool logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

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
// pool: the contract's pre-ping and its learning from failed pings rest on them, so an edit of
// ShouldPing is ignored. Sizes, lifetimes and timeouts set here override the config's, and
// the pool's Size/Overflow bookkeeping still follows the config: change those in the config.
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
	o := options{grace: DefaultCloseGrace}
	for _, opt := range opts {
		opt(&o)
	}
	if o.grace <= 0 {
		o.grace = DefaultCloseGrace
	}
	if cfg == nil {
		return nil, errors.New("pool: nil config")
	}
	pc, err := cfg.PgxPoolConfig()
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: *cfg, log: o.logger, grace: o.grace}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.policy = callPolicy(cfg.Retry, cfg.AcquireTimeout)
	userHook := cfg.Retry.OnRetry
	p.policy.OnRetry = func(attempt int, err error, class retry.Class, delay time.Duration) {
		p.stats.retried(class)
		p.log.Info("pgsteady: retrying", "class", class.String(), "attempt", attempt, "delay", delay, "err", err)
		if userHook != nil {
			userHook(attempt, err, class, delay)
		}
	}
	for _, edit := range o.pgx {
		edit(pc)
	}
	p.install(pc)
	if p.pgx, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("pool: %w", err)
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

// callPolicy is the retry policy of one call: no retry begins after the call's acquire budget,
// since its connection could not be had anyway.
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
	}
	conns := make([]*pgxpool.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			p.release(c)
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

// Config returns a copy of the configuration the pool was built from.
func (p *Pool) Config() config.Config { return p.cfg }

// Pgx returns the underlying [pgxpool.Pool], for what pgsteady does not wrap. Work done on it
// directly gets pre-ping, recycling and the overflow limit, but no retries or acquire timeout.
func (p *Pool) Pgx() *pgxpool.Pool { return p.pgx }

// Ping acquires a connection (retrying NotSent errors) and checks it with a round trip.
func (p *Pool) Ping(ctx context.Context) error {
	if p.closed.Load() {
		return ErrClosed
	}
	start := time.Now()
	attempt := func(ctx context.Context) error {
		c, err := p.acquire(ctx, start)
		if err != nil {
			return err
		}
		defer p.release(c)
		return c.Ping(ctx)
	}
	return p.retry(ctx, retry.Safe, start, attempt(ctx), attempt)
}

// retry takes over after the first attempt of a call that began at start and returned err:
// when err is of a class in on, fn runs again under the call's retry policy
// ([retry.Continue] owns every stop condition). A closed pool stops the retries. Retries of
// connection failures that ran into the call's acquire budget end as a *TimeoutError naming
// AcquireTimeout, with the last failure as its LastErr.
func (p *Pool) retry(ctx context.Context, on retry.Classes, start time.Time, err error, fn func(context.Context) error) error {
	if err == nil {
		return nil
	}
	err = retry.Continue(ctx, p.policy.WithRetryOn(on), start, err, func(ctx context.Context) error {
		if p.closed.Load() {
			return retry.Stop(ErrClosed)
		}
		return fn(ctx)
	})
	var re *retry.Error
	var te *TimeoutError
	if errors.As(err, &re) && errors.As(re.Err, &te) {
		return te // a later attempt's acquire budget ran out: that is the whole story
	}
	if p.policy.MaxElapsed == p.cfg.AcquireTimeout && errors.As(err, &re) && re.Class == retry.NotSent &&
		strings.HasPrefix(re.Bound, "MaxElapsed") {
		p.stats.acquireTimeouts.Add(1)
		te = p.timeoutError(start, "AcquireTimeout "+p.cfg.AcquireTimeout.String())
		te.LastErr = re.Err
		return te
	}
	return err
}
