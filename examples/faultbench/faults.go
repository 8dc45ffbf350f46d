package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// Parameters of the faults.
const (
	idleSessionTimeout = 2 * time.Second        // idle: the server closes sessions idle this long
	idlePause          = 3 * time.Second        // idle: pause after each request of a worker
	killEvery          = time.Second            // kill: interval between two sweeps
	restartDown        = time.Second            // restart: time the server stays down
	blackholeAfter     = 2 * time.Second        // blackhole: a flow idle this long is dropped
	blackholeIdle      = 3 * time.Second        // blackhole: how long the filled pools sit idle
	blackholeFill      = time.Second            // blackhole: workload that fills the pools
	horizonPause       = 3 * time.Second        // horizon: pause after each request of a worker
	horizonReaders     = 4                      // horizon: readers per client (no writers)
	horizonLonger      = 3                      // horizon: runs this many times -duration
	stallEvery         = time.Second            // stall: interval between two stalls
	stallFor           = 300 * time.Millisecond // stall: how long answers are swallowed before the reset
	failoverAt         = 0.3                    // failover: when, as a fraction of -duration
	burstCallers       = 40                     // bursts: readers per client, firing together
	burstEvery         = 500 * time.Millisecond // bursts: interval between two bursts
)

// fault is one scenario of the benchmark.
type fault struct {
	name  string // for -faults
	label string // for the table
	title string // for the progress lines

	pause   time.Duration // replaces the workload's pause when > 0
	proxy   bool          // each client through its own faultproxy
	bouncer bool          // through PgBouncer in transaction mode
	pair    bool          // on a primary/standby pair of its own, through its stable name
	// shape, when not nil, changes the workload of this fault.
	shape func(w *workload)
	// longer, when > 0, multiplies -duration for this fault.
	longer int
	// seedSettings opens database/sql with the seed's SQLAlchemy settings (pool_size 10,
	// max_overflow 20: at most 30 open and 10 idle) instead of its defaults.
	seedSettings bool
	// sessions counts, per client, the sessions the server saw begin on its database during
	// the run (pg_stat_database.sessions).
	sessions bool

	// prepare runs after the clients are open and before the measured workload.
	prepare func(ctx context.Context, r *faultRun) error
	// inject runs beside the measured workload, which lasts at least until inject returns.
	inject func(ctx context.Context, r *faultRun) error
	// cleanup undoes prepare and inject; it runs even when they failed.
	cleanup func(r *faultRun) error

	// replica, for a fault of replicaFaults, does the fault on a trio of its own (see
	// runReplicaFault) instead of all of the above.
	replica func(ctx context.Context, r *replicaRun) error
}

// faults is every fault, in the default order.
var faults = []fault{
	{
		name: "none", label: "none (baseline)", title: "no fault",
	},
	{
		name: "idle", label: "idle sessions closed by server", pause: idlePause,
		title: fmt.Sprintf("idle_session_timeout %v, requests %v apart per worker", idleSessionTimeout, idlePause),
		prepare: func(ctx context.Context, r *faultRun) error {
			return r.srv.SetIdleSessionTimeout(ctx, idleSessionTimeout)
		},
		cleanup: func(r *faultRun) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return r.srv.SetIdleSessionTimeout(ctx, 0)
		},
	},
	{
		name: "kill", label: "backends killed every second",
		title:  fmt.Sprintf("every client backend terminated every %v", killEvery),
		inject: killBackends,
	},
	{
		name: "restart", label: "server restarted twice",
		title:  fmt.Sprintf("server restarted twice, %v down each time", restartDown),
		inject: restartTwice,
	},
	{
		name: "blackhole", label: "idle flows black-holed", proxy: true,
		title:   fmt.Sprintf("flows idle %v silently dropped; pools filled, idle %v, then the workload", blackholeAfter, blackholeIdle),
		prepare: fillThenBlackhole,
	},
	{
		name: "horizon", label: "requests just slower than the black-hole horizon", proxy: true,
		pause: horizonPause, longer: horizonLonger,
		shape: func(w *workload) { w.readers, w.writers = horizonReaders, 0 },
		title: fmt.Sprintf("flows idle %v silently dropped from the start; %d readers per client, %v pause after each read, %d times -duration",
			blackholeAfter, horizonReaders, horizonPause, horizonLonger),
		prepare: func(ctx context.Context, r *faultRun) error {
			for _, p := range r.proxies {
				p.BlackholeIdle(blackholeAfter)
			}
			return nil
		},
	},
	{
		name: "bursts", label: "bursts", seedSettings: true, sessions: true,
		shape: func(w *workload) { w.readers, w.writers, w.burst = burstCallers, 0, burstEvery },
		title: fmt.Sprintf("%d readers per client fire together every %v (a web service behind a load balancer); "+
			"database/sql has the seed's SQLAlchemy settings (pool_size 10 + max_overflow 20: 30 open, 10 idle)", burstCallers, burstEvery),
	},
	{
		name: "stall", label: "answers stalled then flows reset (lost COMMITs)", proxy: true,
		title:  fmt.Sprintf("every %v the proxies swallow the server's answers for %v, then reset every flow", stallEvery, stallFor),
		inject: stallThenReset,
	},
	{
		name: "failover", label: "failover to a promoted standby", pair: true,
		title: fmt.Sprintf("a primary and a streaming standby; at %.0f%% of the run the old primary turns read-only, "+
			"the standby is promoted and the stable name moves to it", failoverAt*100),
		inject: failover,
	},
	{
		name: "bouncer", label: "PgBouncer transaction mode", bouncer: true,
		title: "through PgBouncer 1.18 in transaction mode (pgsteady: pooler=transaction)",
	},
}

func faultNames() []string {
	var names []string
	for _, f := range slices.Concat(faults, replicaFaults) {
		names = append(names, f.name)
	}
	return names
}

func faultByName(name string) (fault, bool) {
	for _, f := range slices.Concat(faults, replicaFaults) {
		if f.name == name {
			return f, true
		}
	}
	return fault{}, false
}

// bench runs faults against one server.
type bench struct {
	srv       *pgharness.Server
	clients   []clientKind
	duration  time.Duration
	work      workload
	noResolve bool // -commit-resolution=false
	progress  func(format string, a ...any)
}

// faultRun is one fault in progress: the clients, each on its own database.
type faultRun struct {
	*bench
	kinds    []clientKind
	direct   []string // per client: DSN of its database, straight to PostgreSQL (the new primary after a failover)
	clients  []client
	proxies  []*faultproxy.Proxy // per client, with fault.proxy
	notes    []string            // what the fault did, for the report
	duration time.Duration       // how long the workload runs
	pair     *pgharness.Pair     // with fault.pair
	clock    *switchClock        // with fault.pair
	sessions []int64             // with fault.sessions: per client, pg_stat_database.sessions of its database before it opened
}

// runFault runs f: a database per client, the clients opened on it (through the proxy or
// PgBouncer if f says so), the workload on all three at once beside the fault, then the
// writes checked against each database.
func (b *bench) runFault(ctx context.Context, f fault) (results []result, err error) {
	r := &faultRun{bench: b, kinds: b.clients, duration: b.duration, notes: []string{f.title}}
	if f.longer > 0 {
		r.duration *= time.Duration(f.longer)
	}
	srv := b.srv
	opts := clientOptions{noResolve: b.noResolve, seedSettings: f.seedSettings}
	if f.pair {
		b.progress("fault %q: starting a primary and a streaming standby", f.name)
		r.pair, err = pgharness.StartPair(ctx, pgharness.Options{})
		if err != nil {
			return nil, err
		}
		defer func() { err = errors.Join(err, r.pair.Close()) }() // after r.close below
		srv = r.pair.Primary
		opts.lookup, opts.readSQL = r.pair.Resolver().LookupFunc, whereSQL
		r.clock = &switchClock{}
		if r.clock.oldServer, err = serverAddr(ctx, r.pair.Primary.DSN()); err != nil {
			return nil, err
		}
	}
	defer func() { err = errors.Join(err, r.close()) }()

	for _, kind := range r.kinds {
		dsn, err := srv.NewDatabase(ctx)
		if err != nil {
			return nil, err
		}
		if err := exec(ctx, dsn, schemaSQL); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		r.direct = append(r.direct, dsn)
		if f.sessions {
			n, err := serverSessions(ctx, srv, dsn)
			if err != nil {
				return nil, err
			}
			r.sessions = append(r.sessions, n)
		}
		target := dsn
		switch {
		case f.pair:
			// Through the name that moves; writes are checked on the new primary.
			target = pgharness.WithDatabase(r.pair.StableDSN(), databaseName(dsn))
			r.direct[len(r.direct)-1] = pgharness.WithAddr(dsn, r.pair.Standby.Addr())
		case f.proxy:
			p, err := faultproxy.New(b.srv.Addr())
			if err != nil {
				return nil, err
			}
			r.proxies = append(r.proxies, p)
			target = pgharness.WithAddr(dsn, p.Addr())
		case f.bouncer:
			target = pgharness.WithDatabase(b.srv.BouncerDSN(), databaseName(dsn))
			if kind == kindPgsteady {
				// pgsteady recognises Neon's "-pooler." host names; for any other
				// transaction-mode pooler the DSN says so.
				target += "&pooler=transaction"
			}
		}
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		c, err := openClient(octx, kind, target, opts)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("open %v: %w", kind, err)
		}
		r.clients = append(r.clients, c)
	}

	if f.bouncer {
		r.notes = append(r.notes, "pgsteady's DSN carries pooler=transaction, its documented option (it recognises "+
			"Neon's \"-pooler.\" host names by itself, not 127.0.0.1); pgxpool and database/sql get the same DSN without it")
	}
	if f.cleanup != nil {
		defer func() {
			if cerr := f.cleanup(r); cerr != nil {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
			}
		}()
	}
	if f.prepare != nil {
		if err := f.prepare(ctx, r); err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
	}

	work := b.work
	if f.pause > 0 {
		work.pause = f.pause
	}
	if f.shape != nil {
		f.shape(&work)
	}
	work.clock = r.clock
	if f.pair {
		newServer, err := serverAddr(ctx, pgharness.WithAddr(r.pair.StableDSN(), r.pair.Standby.Addr()))
		if err != nil {
			return nil, err
		}
		r.notes = append(r.notes, fmt.Sprintf("reads answer inet_server_addr(): the old primary is %s, the standby %s", r.clock.oldServer, newServer))
	}
	b.progress("fault %q: workload for %v (%d readers, %d writers per client)", f.name, r.duration, work.readers, work.writers)
	tallies, injectErr := r.measure(ctx, work, f.inject)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if injectErr != nil {
		return nil, fmt.Errorf("inject: %w", injectErr)
	}

	// Stats before closing; close before checking, so that nothing is in flight. Proxies
	// first: their reset ends black-holed connections at once.
	stats := make([]string, len(r.clients))
	resolves := make([]bool, len(r.clients))
	resolved := make([][2]int64, len(r.clients))
	for i, c := range r.clients {
		stats[i] = c.stats()
		if pc, ok := c.(pgsteadyClient); ok && !b.noResolve {
			resolves[i] = true
			resolved[i][0], resolved[i][1] = pc.resolution()
		}
	}
	if err := r.close(); err != nil {
		return nil, err
	}
	for i := range r.sessions {
		n, err := serverSessions(ctx, srv, r.direct[i])
		if err != nil {
			return nil, err
		}
		stats[i] += fmt.Sprintf("; sessions the server saw begin (pg_stat_database.sessions): %d", n-r.sessions[i])
	}
	for i, kind := range r.kinds {
		counts, err := storedWrites(ctx, r.direct[i])
		if err != nil {
			return nil, fmt.Errorf("checking %v's writes: %w", kind, err)
		}
		res := summarize(f.label, kind.String(), tallies[i], counts)
		res.stats = stats[i]
		if f.pair {
			// Where did lost writes go? Asynchronous replication may leave commits of the
			// old primary behind.
			old := pgharness.WithAddr(r.direct[i], r.pair.Primary.Addr())
			oldCounts, err := storedWrites(ctx, old)
			if err != nil {
				return nil, fmt.Errorf("checking %v's writes on the old primary: %w", kind, err)
			}
			lostOnOld := 0
			for _, w := range tallies[i].writes {
				if w.state == writeAcked && counts[w.key] == 0 && oldCounts[w.key] > 0 {
					lostOnOld++
				}
			}
			last, err := lastWrite(ctx, old)
			if err != nil {
				return nil, fmt.Errorf("checking %v's writes on the old primary: %w", kind, err)
			}
			promoted, _ := since(&r.clock.promoted)
			res.stats += fmt.Sprintf("; of the writes lost, %d are on the old primary; its last write began %.0f ms before the promotion",
				lostOnOld, float64(promoted.Sub(last).Milliseconds()))
		}
		res.notes = r.notes
		if resolves[i] {
			res.resolves = true
			res.resolvedCommitted, res.resolvedAborted = resolved[i][0], resolved[i][1]
		}
		results = append(results, res)
	}
	return results, nil
}

// measure runs the workload on every client at once for the bench's duration, and at least
// until inject (when not nil) has returned.
func (r *faultRun) measure(ctx context.Context, work workload, inject func(context.Context, *faultRun) error) ([]*tally, error) {
	stop := make(chan struct{})
	tallies := make([]*tally, len(r.clients))
	var wg sync.WaitGroup
	for i, c := range r.clients {
		wg.Go(func() { tallies[i] = work.run(ctx, c, "", stop) })
	}
	var injectErr error
	injected := make(chan struct{})
	go func() {
		defer close(injected)
		if inject != nil {
			ictx, cancel := context.WithTimeout(ctx, r.duration+2*time.Minute)
			defer cancel()
			injectErr = inject(ictx, r)
		}
	}()
	timer := time.NewTimer(r.duration)
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
	timer.Stop()
	<-injected
	close(stop)
	wg.Wait()
	return tallies, injectErr
}

// close closes the proxies, then the clients. It may be called more than once. The pair,
// if any, stays: its new primary holds the writes to check.
func (r *faultRun) close() error {
	var errs []error
	for _, p := range r.proxies {
		errs = append(errs, p.Close())
	}
	r.proxies = nil
	for _, c := range r.clients {
		c.close()
	}
	r.clients = nil
	return errors.Join(errs...)
}

// killBackends terminates every client backend once a second for the bench's duration.
func killBackends(ctx context.Context, r *faultRun) error {
	t := time.NewTicker(killEvery)
	defer t.Stop()
	end := time.Now().Add(r.duration)
	sweeps, killed := 0, 0
	for time.Until(end) > killEvery/2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		n, err := r.srv.TerminateBackends(ctx)
		if err != nil {
			return err
		}
		sweeps++
		killed += n
	}
	r.notes = append(r.notes, fmt.Sprintf("%d sweeps terminated %d backends in all", sweeps, killed))
	return nil
}

// restartTwice restarts the server at 20% and 60% of the bench's duration (or as soon as the
// first restart is over), keeping it down restartDown each time.
func restartTwice(ctx context.Context, r *faultRun) error {
	start := time.Now()
	for _, at := range []float64{0.2, 0.6} {
		if err := sleep(ctx, time.Until(start.Add(time.Duration(at*float64(r.duration))))); err != nil {
			return err
		}
		t0 := time.Now()
		if err := r.srv.StopServer(ctx); err != nil {
			return err
		}
		t1 := time.Now()
		if err := sleep(ctx, restartDown); err != nil {
			return err
		}
		t2 := time.Now()
		if err := r.srv.StartServer(ctx); err != nil {
			return err
		}
		t3 := time.Now()
		r.notes = append(r.notes, fmt.Sprintf("restart at %.1f s: stopping took %.1f s, down %.1f s, starting until it accepted connections %.1f s",
			t0.Sub(start).Seconds(), t1.Sub(t0).Seconds(), t2.Sub(t1).Seconds(), t3.Sub(t2).Seconds()))
	}
	return nil
}

// fillThenBlackhole runs the workload briefly so that every pool holds connections, turns on
// the black hole, and lets the connections sit idle past its threshold.
func fillThenBlackhole(ctx context.Context, r *faultRun) error {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range r.clients {
		wg.Go(func() { r.work.run(ctx, c, "fill-", stop) })
	}
	err := sleep(ctx, blackholeFill)
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	flows := 0
	for _, p := range r.proxies {
		flows += p.Flows()
		p.BlackholeIdle(blackholeAfter)
	}
	r.notes = append(r.notes, fmt.Sprintf("%d connections open through the proxies when they went idle", flows))
	return sleep(ctx, blackholeIdle)
}

// stallThenReset, every stallEvery for the run's duration, makes every proxy swallow the
// server's answers for stallFor while still forwarding the clients' bytes, then resets every
// flow: a COMMIT in flight reaches the server, its answer never comes back, and the client
// sees its connection reset (what a load balancer failing over, or a NAT losing its state
// under load, does to a request in flight).
func stallThenReset(ctx context.Context, r *faultRun) error {
	t := time.NewTicker(stallEvery)
	defer t.Stop()
	end := time.Now().Add(r.duration)
	stalls, reset := 0, 0
	for time.Until(end) > stallEvery/2 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for _, p := range r.proxies {
			p.StallResponses()
		}
		err := sleep(ctx, stallFor)
		for _, p := range r.proxies {
			reset += p.ResetAll()
			p.Resume()
		}
		if err != nil {
			return err
		}
		stalls++
	}
	r.notes = append(r.notes, fmt.Sprintf("%d stalls of %v, each ended by resetting every flow: %d flows reset in all", stalls, stallFor, reset))
	return nil
}

// failover, at failoverAt of the run, does what a managed database's failover does: the old
// primary turns read-only (its open sessions get 25006 on writes), the standby is promoted,
// and the stable name moves to it. It records the promotion and the move on the run's clock.
func failover(ctx context.Context, r *faultRun) error {
	start := time.Now()
	if err := sleep(ctx, time.Duration(failoverAt*float64(r.duration))); err != nil {
		return err
	}
	t0 := time.Now()
	if err := r.pair.Primary.SetReadOnly(ctx, true); err != nil {
		return err
	}
	t1 := time.Now()
	if err := r.pair.CatchUp(ctx); err != nil {
		return err
	}
	t2 := time.Now()
	if err := r.pair.Promote(ctx); err != nil {
		return err
	}
	t3 := time.Now()
	r.clock.promoted.Store(t3.UnixNano())
	r.pair.MoveName()
	r.clock.moved.Store(time.Now().UnixNano())
	r.notes = append(r.notes, fmt.Sprintf("old primary read-only at %.1f s (took %.0f ms); standby caught up with its WAL %.0f ms later; "+
		"promoted and accepting writes %.0f ms after that; stable name moved at once. "+
		"\"first write\" counts from the promotion; \"reads after the switch\" are reads sent after the name moved",
		t0.Sub(start).Seconds(), float64(t1.Sub(t0).Milliseconds()), float64(t2.Sub(t1).Milliseconds()), float64(t3.Sub(t2).Milliseconds())))
	return nil
}

// serverAddr asks the server at dsn for inet_server_addr(), as whereSQL does.
func serverAddr(ctx context.Context, dsn string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var addr string
	err = conn.QueryRow(ctx, "SELECT inet_server_addr()::text").Scan(&addr)
	return addr, err
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// exec runs sql on a connection of its own.
func exec(ctx context.Context, dsn, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// storedWrites reads back how many times each key was stored.
func storedWrites(ctx context.Context, dsn string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT key, count(*) FROM writes GROUP BY key")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	var key string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&key, &n}, func() error {
		counts[key] = n
		return nil
	})
	return counts, err
}

// lastWrite returns when the last row of writes was written (its transaction's start).
func lastWrite(ctx context.Context, dsn string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return time.Time{}, err
	}
	defer conn.Close(context.Background())
	var at time.Time
	err = conn.QueryRow(ctx, "SELECT coalesce(max(at), 'epoch') FROM writes").Scan(&at)
	return at, err
}

// databaseName is the database a URL DSN names.
func databaseName(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic("faultbench: not a URL DSN")
	}
	return strings.TrimPrefix(u.Path, "/")
}

// serverSessions reads pg_stat_database.sessions (PostgreSQL 14+) of dsn's database over an
// admin connection to another database, once the count has stopped moving (a backend reports
// its statistics lazily, at the latest when it exits).
func serverSessions(ctx context.Context, srv *pgharness.Server, dsn string) (int64, error) {
	conn, err := pgx.Connect(ctx, srv.AdminDSN())
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	last := int64(-1)
	for {
		var n int64
		if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			return 0, err
		}
		err := conn.QueryRow(ctx, "SELECT coalesce(sessions, 0) FROM pg_stat_database WHERE datname = $1", databaseName(dsn)).Scan(&n)
		if err != nil || n == last {
			return n, err
		}
		last = n
		if err := sleep(ctx, time.Second); err != nil {
			return 0, err
		}
	}
}
