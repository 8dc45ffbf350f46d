package doctor

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// Defaults of [Options].
const (
	// DefaultTimeout bounds a whole diagnosis.
	DefaultTimeout = 10 * time.Second
	// DefaultPings is the number of pings whose median is the round-trip time.
	DefaultPings = 5
)

// Options tunes [Diagnose]. The zero value is ready to use.
type Options struct {
	// Replicas is the number of instances of the service, each with its own pool, that share
	// the database: the pool's Size + Overflow times Replicas is compared with the server's
	// max_connections. Default 1.
	Replicas int
	// Pings is the number of empty queries timed for the round-trip time. Default
	// [DefaultPings] (5).
	Pings int
	// Timeout bounds the whole diagnosis (the ctx may bound it further). Default
	// [DefaultTimeout] (10 s).
	Timeout time.Duration
	// LookupFunc resolves host names, for the probe and the sessions alike. Default: the one
	// pgx would use (the config's ConnConfig.LookupFunc).
	LookupFunc pgconn.LookupFunc
}

func (o Options) withDefaults() Options {
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	if o.Pings < 1 {
		o.Pings = DefaultPings
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return o
}

// diagnosis is a Report being built.
type diagnosis struct {
	r   Report
	cfg *config.Config
	opt Options
}

func (d *diagnosis) add(id string, l Level, text string) {
	d.r.Findings = append(d.r.Findings, Finding{ID: id, Level: l, Text: text})
}

func (d *diagnosis) advise(id, setting, change, why string) {
	d.r.Advice = append(d.r.Advice, Advice{ID: id, Setting: setting, Change: change, Why: why})
}

// Diagnose tells what stands between a service using cfg and its database, and what to change.
// It reads cfg as package pool would use it, probes the path to the first host (DNS, TCP, TLS
// and the authentication methods offered), opens sessions as the pool would, asks the server
// about itself, and compares the server's timeouts and limits with the pool's options.
//
// It changes nothing on the server: it runs read-only queries of settings and of its own
// session, sends no statement through a session it does not own, and leaves no session
// behind. It takes a few round trips and at most opts.Timeout (10 s by default) or the ctx's
// deadline, whichever comes first. It opens at most three sessions, closed before it returns.
//
// Whatever it finds, network and server failures included, is in the Report, as findings with
// stable IDs (the ID constants) and advice; the error is non-nil only when cfg itself is not
// usable ([config.Config.PgxPoolConfig] fails). The Report never contains the password.
// Diagnose is safe for concurrent use.
func Diagnose(ctx context.Context, cfg *config.Config, opts Options) (Report, error) {
	start := time.Now()
	opts = opts.withDefaults()
	ppc, err := cfg.PgxPoolConfig()
	if err != nil {
		return Report{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	cc := ppc.ConnConfig
	if opts.LookupFunc != nil {
		cc.LookupFunc = opts.LookupFunc
	}
	// Statements of the diagnosis must work through any pooler, whatever Config.Pooler says.
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	d := &diagnosis{cfg: cfg, opt: opts}
	readConnString(cfg, &cc.Config, d)
	if probePath(ctx, &cc.Config, d.r.ConnString.SSLMode, d) {
		examine(ctx, cc, d)
	}
	judgeKeepAlive(cfg, d)
	d.r.Took = time.Since(start)
	return d.r, nil
}

// examine opens a session as the pool would and asks the server about itself.
func examine(ctx context.Context, cc *pgx.ConnConfig, d *diagnosis) {
	start := time.Now()
	conn, err := pgx.ConnectConfig(ctx, cc)
	took := time.Since(start)
	if err != nil {
		d.add(IDSession, Fail, fmt.Sprintf("no session: %v [%s]", err, retry.Classify(err)))
		return
	}
	defer conn.Close(context.Background())
	d.r.Path.SessionTime = took
	d.add(IDSession, OK, "session opened in "+ms(took)+" (TCP, TLS, login, startup)")
	measureRTT(ctx, conn, d)
	srv, err := readServer(ctx, conn)
	if err != nil {
		d.add(IDServerVersion, Fail, fmt.Sprintf("the server did not answer questions about itself: %v [%s]", err, retry.Classify(err)))
		return
	}
	d.r.Server = srv.Server
	seePooler(ctx, conn, cc, srv)
	judgeServer(d.cfg, srv, d.opt.Replicas, d)
}

// measureRTT times opts.Pings empty queries and keeps their median.
func measureRTT(ctx context.Context, conn *pgx.Conn, d *diagnosis) {
	var rtts []time.Duration
	for range d.opt.Pings {
		start := time.Now()
		if err := conn.Ping(ctx); err != nil {
			d.add(IDRTT, Fail, fmt.Sprintf("a ping failed: %v [%s]", err, retry.Classify(err)))
			return
		}
		rtts = append(rtts, time.Since(start))
	}
	d.r.Path.RTTs = rtts
	d.r.Path.RTT = median(rtts)
	d.add(IDRTT, OK, fmt.Sprintf("round trip %s (median of %d pings)", ms(d.r.Path.RTT), len(rtts)))
}

// median returns the middle value of ds (the upper one of an even count), or 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
