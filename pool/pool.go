package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// ErrClosed is returned by every method of a closed [Pool].
var ErrClosed = errors.New("pool: closed")

// Pool is a resilient PostgreSQL connection pool on top of [pgxpool.Pool]. It is safe for
// concurrent use. Its method set is pgxpool's, so it satisfies the DBTX interface that sqlc
// generates for pgx/v5.
//
// What each method retries, by default and through [Pool.Idempotent]:
//
//	method                      retried by default       with Idempotent()
//	Exec, QueryRow              NotSent                  NotSent, ConnLost
//	Query                       NotSent, before a row    NotSent, ConnLost, before a row
//	SendBatch                   NotSent, before a result NotSent, ConnLost, before a result
//	CopyFrom, Begin, Acquire    NotSent (connecting)     -
//	Tx                          the whole function on NotSent, ConnLost and Conflict,
//	                            never a COMMIT whose outcome is unknown
type Pool struct {
	pgx    *pgxpool.Pool
	cfg    config.Config
	policy retry.Policy // cfg.Retry, with the pool's OnRetry hook
	log    *slog.Logger
	conns  connTable
	stats  counters

	lastConnErr lastConnErr

	closed    atomic.Bool
	closeOnce sync.Once
	bg        sync.WaitGroup // closes of overflow connections
}

// Option changes how [New] builds a [Pool].
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger makes the pool log one line per retry (Info) and per connection destroyed because
// it failed (Warn), with the error class and attempt. Messages never contain the password.
// Without it the pool logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// New builds a pool from cfg, which must come from [config.Parse] or [config.FromEnv] (cfg is
// copied; later changes to it have no effect).
//
// Unless cfg.LazyStart is set, New opens a connection before it returns, retrying with
// cfg.Retry while the error is of class [retry.NotSent] (the server is starting, restarting or
// refusing connections): a database that stays down, a wrong password or an unknown database
// make New fail, and nothing is left running. With cfg.WarmUp it also opens cfg.Size
// connections. ctx bounds this start-up only.
func New(ctx context.Context, cfg *config.Config, opts ...Option) (*Pool, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if cfg == nil {
		return nil, errors.New("pool: nil config")
	}
	pc, err := cfg.PgxPoolConfig()
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: *cfg, log: o.logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.policy = cfg.Retry
	userHook := cfg.Retry.OnRetry
	p.policy.OnRetry = func(attempt int, err error, class retry.Class, delay time.Duration) {
		p.stats.retried(class)
		p.log.Info("pgsteady: retrying", "class", class.String(), "attempt", attempt, "delay", delay, "err", err)
		if userHook != nil {
			userHook(attempt, err, class, delay)
		}
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
		c, err := p.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("pool: start: %w", err)
		}
		conns = append(conns, c)
	}
	return nil
}

// Close closes every connection and returns once they are closed and the pool's background
// work has ended. Connections still acquired are closed when released. Close is idempotent;
// afterwards every method returns [ErrClosed].
func (p *Pool) Close() {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		p.pgx.Close()
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
	return p.run(ctx, retry.Safe, func(ctx context.Context) error {
		c, err := p.acquire(ctx)
		if err != nil {
			return err
		}
		defer p.release(c)
		return c.Ping(ctx)
	})
}

// run calls fn once and, when it fails with an error of a class in on, again under the retry
// policy.
func (p *Pool) run(ctx context.Context, on retry.Classes, fn func(context.Context) error) error {
	if p.closed.Load() {
		return ErrClosed
	}
	return p.retryAfter(ctx, on, fn(ctx), fn)
}

// retryAfter takes over after a first attempt that returned err: when err is of a class in on,
// fn runs again under the retry policy, which counts the first attempt.
// An error that already gave up retrying (a *retry.Error from a nested call) is returned as it
// is, so that retries do not multiply.
func (p *Pool) retryAfter(ctx context.Context, on retry.Classes, err error, fn func(context.Context) error) error {
	var done *retry.Error
	if err == nil || !on.Has(retry.Classify(err)) || errors.As(err, &done) {
		return err
	}
	first := err
	return retry.Do(ctx, p.policy.WithRetryOn(on), func(ctx context.Context) error {
		if first != nil {
			err, first = first, nil
			return err
		}
		if p.closed.Load() {
			return ErrClosed
		}
		return fn(ctx)
	})
}
