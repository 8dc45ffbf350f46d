package doctor

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// DefaultWatchEvery is how often [Watch] probes by default.
const DefaultWatchEvery = 5 * time.Second

// The probes of [Watch], in [Event.Probe].
const (
	// ProbePing pings a session kept open and used every round: the path and the server answer.
	ProbePing = "ping"
	// ProbeConnect opens and closes a session: DNS, TCP, TLS and login work.
	ProbeConnect = "connect"
	// ProbeIdle pings a session left idle for 2, 4, 8, ... rounds (up to 10 minutes): a
	// failure shows how long an idle connection survives (idle_session_timeout, a NAT or load
	// balancer, a suspended compute). After a failure the ladder starts again.
	ProbeIdle = "idle"
)

// WatchOptions tunes [Watch]. The zero value is ready to use.
type WatchOptions struct {
	// Every is the time between rounds. Default [DefaultWatchEvery] (5 s).
	Every time.Duration
	// LookupFunc resolves host names. Default: the one pgx would use.
	LookupFunc pgconn.LookupFunc
}

// maxIdleStep caps the idle ladder of ProbeIdle.
const maxIdleStep = 10 * time.Minute

// Event is one probe of [Watch].
type Event struct {
	At    time.Time `json:"at"`
	Probe string    `json:"probe"`
	// Idle is how long the session was idle before the probe (ProbeIdle only).
	Idle time.Duration `json:"idle,omitempty"`
	// Took is how long the probe took.
	Took time.Duration `json:"took"`
	// Err is the probe's error, nil when it worked; Error is its text and Class its
	// [retry.Classify] class ("not-sent", "conn-lost", ...).
	Err   error  `json:"-"`
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`
}

// Watch probes the database every opts.Every until ctx ends, and calls emit with each probe's
// outcome ([ProbePing], [ProbeConnect] and [ProbeIdle]), faults with the class package pool
// gives them. It returns nil when ctx ends, or the error of [config.Config.PgxPoolConfig].
// emit is called from Watch's goroutine, one event at a time; every session Watch opens is
// closed before it returns. Like [Diagnose], it changes nothing on the server.
func Watch(ctx context.Context, cfg *config.Config, opts WatchOptions, emit func(Event)) error {
	if opts.Every <= 0 {
		opts.Every = DefaultWatchEvery
	}
	ppc, err := cfg.PgxPoolConfig()
	if err != nil {
		return err
	}
	cc := ppc.ConnConfig
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	if opts.LookupFunc != nil {
		cc.LookupFunc = opts.LookupFunc
	}
	w := &watcher{cfg: cfg, cc: cc, emit: emit, every: opts.Every}
	defer w.close()
	t := time.NewTicker(opts.Every)
	defer t.Stop()
	for {
		w.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// watcher is the state of one Watch.
type watcher struct {
	cfg   *config.Config
	cc    *pgx.ConnConfig
	emit  func(Event)
	every time.Duration

	busy      *pgx.Conn // pinged every round
	idle      *pgx.Conn // pinged when idle for step
	idleSince time.Time
	step      time.Duration
}

func (w *watcher) round(ctx context.Context) {
	w.busy = w.ping(ctx, w.busy, ProbePing, 0)
	w.connectProbe(ctx)
	switch {
	case w.idle == nil:
		w.idle, w.step = w.connect(ctx), 2*w.every
		w.idleSince = time.Now()
	case time.Since(w.idleSince)+w.every/2 >= w.step: // rounds are every apart: the nearest one
		idle := time.Since(w.idleSince)
		if w.idle = w.ping(ctx, w.idle, ProbeIdle, idle); w.idle != nil {
			w.step = min(2*w.step, maxIdleStep)
		}
		w.idleSince = time.Now()
	}
}

// ping pings c (opening it first when nil) and returns it, or nil after a failure.
func (w *watcher) ping(ctx context.Context, c *pgx.Conn, probe string, idle time.Duration) *pgx.Conn {
	start := time.Now()
	if c == nil {
		if c = w.connect(ctx); c == nil {
			return nil
		}
		start = time.Now()
	}
	pctx, cancel := context.WithTimeout(ctx, w.cfg.PingTimeout)
	err := c.Ping(pctx)
	cancel()
	w.report(ctx, probe, idle, start, err)
	if err != nil {
		c.Close(context.Background())
		return nil
	}
	return c
}

// connectProbe opens and closes a session.
func (w *watcher) connectProbe(ctx context.Context) {
	if c := w.connect(ctx); c != nil {
		c.Close(context.Background())
	}
}

// connect opens a session within ConnectTimeout and reports it as a ProbeConnect event.
func (w *watcher) connect(ctx context.Context) *pgx.Conn {
	start := time.Now()
	c, err := pgx.ConnectConfig(ctx, w.cc)
	w.report(ctx, ProbeConnect, 0, start, err)
	if err != nil {
		return nil
	}
	return c
}

// report emits an event, unless the probe failed only because ctx ended.
func (w *watcher) report(ctx context.Context, probe string, idle time.Duration, start time.Time, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	e := Event{At: start, Probe: probe, Idle: idle, Took: time.Since(start), Err: err}
	if err != nil {
		e.Error, e.Class = err.Error(), retry.Classify(err).String()
	}
	w.emit(e)
}

func (w *watcher) close() {
	for _, c := range []*pgx.Conn{w.busy, w.idle} {
		if c != nil {
			c.Close(context.Background())
		}
	}
}
