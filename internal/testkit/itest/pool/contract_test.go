package pool_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

var (
	contractSeed     = flag.Uint64("contract.seed", 0, "contract checker: run this seed only (0: the fixed seeds, or random seeds with -contract.duration)")
	contractDuration = flag.Duration("contract.duration", 0, "contract checker: run random seeds for this long")
	contractRunLen   = flag.Duration("contract.run", 5*time.Second, "contract checker: length of one run's workload")
	contractSlack    = flag.Duration("contract.slack", 3*time.Second, "contract checker: time a call may take past its bound before it counts as a violation (the machine is shared and noisy)")
	contractWorkers  = flag.Int("contract.workers", 6, "contract checker: concurrent callers")
)

// contractSeeds are the seeds of the default run (CI).
var contractSeeds = []uint64{1, 2, 3, 4, 5}

func TestContract(t *testing.T) {
	pgharness.Require(t, srv)
	var total tally
	runSeed := func(seed uint64) bool {
		return t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := runContract(t, seed)
			total.add(&r.tally)
		})
	}
	switch {
	case *contractSeed != 0:
		runSeed(*contractSeed)
	case *contractDuration > 0:
		end := time.Now().Add(*contractDuration)
		for time.Now().Before(end) {
			if !runSeed(rand.Uint64()%1_000_000_000+1) && !harnessAlive() {
				t.Fatal("the test server no longer answers: stopping")
			}
		}
	default:
		for _, s := range contractSeeds {
			runSeed(s)
		}
	}
	t.Logf("contract checker, all runs:\n%s", total.String())
}

// harnessAlive reports whether the test server still answers.
func harnessAlive() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := srv.TerminateBackends(ctx) // the one admin statement the harness exports; kills nothing between runs
	return err == nil
}

// writeKind says what a call's writes promise.
type writeKind int

const (
	noWrite   writeKind = iota
	writeTx             // in Pool.Tx: stored once if acknowledged; if stored after an error, the error is an *AmbiguousCommitError
	writePlan           // one statement or batch outside Tx: stored once if acknowledged; if stored after an error, the error does not claim nothing was sent
	writeIdem           // an idempotent upsert: stored if acknowledged, at most once in any case (a unique key)
	writeNone           // rolled back by the caller or by fn's error: never stored
	writePart           // a procedure or DO block that commits, then fails: stored at most once, never run twice
)

// call is one call of a public method, as a worker made and saw it.
type call struct {
	worker   int
	seq      int
	method   string
	ctxMode  string
	began    time.Time // the run's
	start    time.Time
	end      time.Time // zero while running
	deadline time.Time // the caller's, zero if none
	err      error
	write    writeKind
	keys     []string               // rows of table writes (or idem) the call writes, all or none
	wrong    string                 // a successful read that returned a wrong value
	flagged  bool                   // already reported as over its bound
	check    func(err error) string // what the call's error must be, for an application's call: "" or the broken promise
}

// rename names the call's method more precisely once it has begun, under mu (the run's lock,
// which the monitor holds while it reads calls).
func (c *call) rename(method string, mu *sync.Mutex) {
	mu.Lock()
	c.method = method
	mu.Unlock()
}

func (c *call) String() string {
	s := fmt.Sprintf("worker %d call %d %s (at %v, ctx %s", c.worker, c.seq, c.method, c.start.Sub(c.began).Round(time.Millisecond), c.ctxMode)
	if !c.deadline.IsZero() {
		s += fmt.Sprintf(", deadline %v", c.deadline.Sub(c.start).Round(time.Millisecond))
	}
	return s + ")"
}

// fault is one fault of the schedule, from start to end (end == start for an instant one).
type fault struct {
	kind       string
	start, end time.Time
	hold       bool          // holds calls in flight (answers withheld) while it lasts
	extra      time.Duration // how much longer than the fault itself it can hold a call
}

// contractRun is the state of one run.
type contractRun struct {
	t       *testing.T
	seed    uint64
	cfg     config.Config
	dsn     string // direct to the server, for setup and checks
	bouncer bool
	p       *pool.Pool
	began   time.Time // when the workload started
	proxy   *faultproxy.Proxy
	gate    *gate
	ro      *pool.Pool // the same database as a role whose sessions are read-only; nil through PgBouncer
	logs    *reactionLog
	pings   pingLedger // the pool's ping events

	mu         sync.Mutex
	calls      []*call
	faults     []*fault
	violations []string
	dumped     bool
	tally      tally
}

// timeline lists the faults, from the start of the workload.
func (r *contractRun) timeline() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, f := range r.faults {
		fmt.Fprintf(&b, "\t%8v %-22s %v\n", f.start.Sub(r.began).Round(time.Millisecond), f.kind, f.end.Sub(f.start).Round(time.Millisecond))
	}
	return b.String()
}

// violate records a broken promise.
func (r *contractRun) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.violations = append(r.violations, fmt.Sprintf(format, args...))
}

// tally counts what runs did, for the report.
type tally struct {
	runs       int
	calls      map[string][2]int // method -> ok, failed
	faults     map[string]int
	violations int
	closeHeld  map[string]int
	// Of the pool under test: pre-pings that failed, pre-pings hedged (given up for another
	// connection), callers that waited a whole PingTimeout for a pre-ping where the hedge
	// delay was shorter, and acquires that waited for a connection to come back rather than
	// open one.
	failedPings, hedged, pingTimeoutWaits, returnWaits int64
}

func (t *tally) add(o *tally) {
	if t.calls == nil {
		t.calls, t.faults, t.closeHeld = map[string][2]int{}, map[string]int{}, map[string]int{}
	}
	t.runs += o.runs
	t.violations += o.violations
	t.failedPings += o.failedPings
	t.hedged += o.hedged
	t.pingTimeoutWaits += o.pingTimeoutWaits
	t.returnWaits += o.returnWaits
	for k, v := range o.calls {
		c := t.calls[k]
		t.calls[k] = [2]int{c[0] + v[0], c[1] + v[1]}
	}
	for k, v := range o.faults {
		t.faults[k] += v
	}
	for k, v := range o.closeHeld {
		t.closeHeld[k] += v
	}
}

func (t *tally) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "runs %d, violations %d\n", t.runs, t.violations)
	var ms []string
	n := 0
	for m, v := range t.calls {
		ms = append(ms, m)
		n += v[0] + v[1]
	}
	sort.Strings(ms)
	fmt.Fprintf(&b, "calls %d:\n", n)
	for _, m := range ms {
		fmt.Fprintf(&b, "  %-24s ok %6d  failed %6d\n", m, t.calls[m][0], t.calls[m][1])
	}
	var fs []string
	for f, v := range t.faults {
		fs = append(fs, fmt.Sprintf("%s %d", f, v))
	}
	sort.Strings(fs)
	fmt.Fprintf(&b, "faults: %s\n", strings.Join(fs, ", "))
	var hs []string
	for h, v := range t.closeHeld {
		hs = append(hs, fmt.Sprintf("%s %d", h, v))
	}
	sort.Strings(hs)
	fmt.Fprintf(&b, "held across Close: %s\n", strings.Join(hs, ", "))
	fmt.Fprintf(&b, "pre-pings failed %d, hedged %d, waited a whole PingTimeout the hedge delay would have spared %d; waits for a returning connection %d",
		t.failedPings, t.hedged, t.pingTimeoutWaits, t.returnWaits)
	return b.String()
}

// runContract runs one seed and fails t on every violation, with the command that replays it.
func runContract(t *testing.T, seed uint64) *contractRun {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	r := &contractRun{t: t, seed: seed, tally: tally{runs: 1, calls: map[string][2]int{}, faults: map[string]int{}, closeHeld: map[string]int{}}}
	defer func() {
		r.tally.violations = len(r.violations)
		if len(r.violations) > 0 {
			for _, v := range r.violations {
				t.Error(v)
			}
			t.Errorf("faults of the run (from its start):\n%s", r.timeline())
			t.Errorf("%d violations; replay with:\n\tgo -C internal/testkit test -count=1 -run 'TestContract/seed=%d$' ./itest/pool/ -contract.seed=%d -contract.run=%v -contract.workers=%d -contract.slack=%v -v",
				len(r.violations), seed, seed, *contractRunLen, *contractWorkers, *contractSlack)
		}
	}()
	s := srv
	ctx := context.Background()
	r.dsn = freshDB(t)
	setup := newPool(t, r.dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	if _, err := setup.Exec(ctx, "CREATE TABLE idem (key text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, commitThenConflictSQL); err != nil {
		t.Fatal(err)
	}
	setup.Close()

	// The target: PostgreSQL, or PgBouncer in transaction mode (one run in four), behind the
	// fault proxy, behind a gate that can refuse connections.
	target := s.Addr()
	dsn := r.dsn
	if r.bouncer = rng.IntN(4) == 0; r.bouncer {
		name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
		dsn = pgharness.WithDatabase(s.BouncerDSN(), name) + "&pooler=transaction"
		target = s.BouncerAddr()
	}
	r.proxy = faultproxy.Start(t, target)
	r.gate = startGate(t, r.proxy.Addr())

	cfg, err := config.Parse(pgharness.WithAddr(dsn, r.gate.addr))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Size = 1 + rng.IntN(4)
	cfg.Overflow = rng.IntN(4)
	if rng.IntN(4) == 0 {
		cfg.Size, cfg.Overflow = 1, 0 // one connection: a lost COMMIT is resolved on the slot it frees
	}
	cfg.PrePing = []config.PrePingMode{config.PrePingIdle, config.PrePingAlways, config.PrePingNever}[rng.IntN(3)]
	cfg.AcquireTimeout = time.Duration(1+rng.IntN(3)) * time.Second
	cfg.PingTimeout = time.Duration(300+rng.IntN(700)) * time.Millisecond
	cfg.ConnectTimeout = time.Duration(1+rng.IntN(2)) * time.Second
	cfg.KeepAlive = time.Second // dead flows are declared dead within cfg.DeadFlowAfter()
	if rng.IntN(3) == 0 {
		cfg.Retry.MaxElapsed = time.Duration(1+rng.IntN(3)) * time.Second
	}
	cfg.WarmUp = rng.IntN(2) == 0 // New opens Size connections, as pgxpool's MinConns opening does
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r.cfg = *cfg
	t.Logf("seed %d: target %s, Size %d, Overflow %d, PrePing %v, AcquireTimeout %v, PingTimeout %v, ConnectTimeout %v, Retry.MaxElapsed %v, DeadFlowAfter %v, WarmUp %v",
		seed, map[bool]string{false: "postgres", true: "pgbouncer (transaction mode)"}[r.bouncer],
		cfg.Size, cfg.Overflow, cfg.PrePing, cfg.AcquireTimeout, cfg.PingTimeout, cfg.ConnectTimeout, cfg.Retry.MaxElapsed, cfg.DeadFlowAfter(), cfg.WarmUp)

	baseline := goroutineIDs()
	r.logs = &reactionLog{}
	nctx, cancel := context.WithTimeout(ctx, time.Minute)
	r.p, err = pool.New(nctx, cfg, pool.WithLogger(slog.New(r.logs)), pool.WithObserver(&r.pings))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			r.p.Close()
		}
	}()
	if !r.bouncer {
		r.ro = r.readOnlyRolePool(cfg)
		defer r.ro.Close()
	}

	// Workers, the fault schedule and the monitor of bounds and stats.
	r.began = time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	workers := make([]*worker, *contractWorkers)
	for i := range workers {
		workers[i] = &worker{r: r, id: i, rng: rand.New(rand.NewPCG(seed, uint64(i+1)))}
		wg.Go(func() { workers[i].loop(stop) })
	}
	faultsDone := make(chan struct{})
	frng := rand.New(rand.NewPCG(seed, 0))
	go func() {
		defer close(faultsDone)
		r.schedule(stop, frng)
	}()
	monStop := make(chan struct{})
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		r.monitor(monStop)
	}()

	time.Sleep(*contractRunLen)
	close(stop)
	<-faultsDone
	r.liftAll()
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case <-time.After(30 * time.Second):
		r.violate("workers still in calls 30 s after the faults were lifted:\n%s", poolGoroutinesOf(baseline))
	}

	r.checkApplicationErrors()

	// Close, maybe while a caller holds a connection, or callers wait for one.
	held := r.hold(rng)
	r.tally.closeHeld[held.what]++
	grace := pool.DefaultCloseGrace
	closeStart := time.Now()
	closeDone := make(chan struct{})
	go func() { r.p.Close(); close(closeDone) }()
	select {
	case <-closeDone:
	case <-time.After(grace + *contractSlack):
		r.violate("Close with %s held did not return within its grace %v + %v slack", held.what, grace, *contractSlack)
		held.release()
		select {
		case <-closeDone:
		case <-time.After(time.Minute):
			r.violate("Close still blocked a minute after what was held was released:\n%s", poolGoroutinesOf(baseline))
		}
	}
	closed = true
	t.Logf("Close with %s held returned after %v", held.what, time.Since(closeStart).Round(time.Millisecond))
	held.after(r)
	r.checkClosed(closeStart)
	close(monStop)
	<-monDone
	r.checkStatsAfterClose()
	if r.ro != nil {
		r.ro.Close() // its background work has ended: its Stats and its log lines are final
	}
	st := r.p.Stats()
	r.tally.failedPings, r.tally.hedged, r.tally.pingTimeoutWaits, r.tally.returnWaits = st.FailedPings, st.HedgedPings, st.PingTimeoutWaits, st.ReturnWaits
	r.checkReactions()
	r.checkPings(st)
	r.checkGoroutines(baseline)
	r.checkSockets()
	for _, w := range workers {
		if w.db != nil {
			w.db.Close()
		}
	}
	r.checkWrites()
	r.summarize()
	return r
}

type worker struct {
	r   *contractRun
	id  int
	rng *rand.Rand
	seq int
	db  *sql.DB // from StdDB, opened by the first StdDB call
}

// ops are the calls a worker draws from, each a public method (or a use of one).
var ops = []struct {
	name string
	run  func(w *worker, ctx context.Context, c *call, cancel context.CancelFunc) error
}{
	{"Exec", (*worker).exec},
	{"Idempotent.Exec", (*worker).idemExec},
	{"QueryRow", func(w *worker, ctx context.Context, c *call, _ context.CancelFunc) error {
		return w.queryRow(ctx, c, w.r.p.QueryRow)
	}},
	{"Idempotent.QueryRow", func(w *worker, ctx context.Context, c *call, _ context.CancelFunc) error {
		return w.queryRow(ctx, c, w.r.p.Idempotent().QueryRow)
	}},
	{"Query", func(w *worker, ctx context.Context, c *call, _ context.CancelFunc) error {
		return w.query(ctx, c, w.r.p.Query)
	}},
	{"Idempotent.Query", func(w *worker, ctx context.Context, c *call, _ context.CancelFunc) error {
		return w.query(ctx, c, w.r.p.Idempotent().Query)
	}},
	{"Idempotent.Do", (*worker).do},
	{"SendBatch", (*worker).sendBatch},
	{"Idempotent.SendBatch", (*worker).idemSendBatch},
	{"CopyFrom", (*worker).copyFrom},
	{"Begin", (*worker).begin},
	{"BeginTx", (*worker).begin},
	{"Acquire", (*worker).acquire},
	{"Tx", (*worker).tx},
	{"Ping", func(w *worker, ctx context.Context, _ *call, _ context.CancelFunc) error { return w.r.p.Ping(ctx) }},
	{"StdDB.Exec", (*worker).stdExec},
	{"StdDB.QueryRow", (*worker).stdQueryRow},
	{"Tx (read-only)", (*worker).readOnlyTx},
	{"Exec (read-only role)", (*worker).readOnlyRoleExec},
	{"CALL (commits, then deadlock)", (*worker).callCommitThenConflict},
	{"DO (commits, then conflict)", (*worker).doCommitThenConflict},
}

func (w *worker) loop(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		op := ops[w.rng.IntN(len(ops))]
		if op.name == "Exec (read-only role)" && w.r.ro == nil {
			continue // no such role behind PgBouncer
		}
		w.one(op.name, op.run)
		time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
	}
}

// one makes one call with a random context, and records it.
func (w *worker) one(method string, run func(*worker, context.Context, *call, context.CancelFunc) error) {
	w.seq++
	c := &call{worker: w.id, seq: w.seq, method: method, began: w.r.began}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var timer *time.Timer
	switch n := w.rng.IntN(10); {
	case n < 4:
		c.ctxMode = "none"
	case n < 7:
		d := time.Duration(20+w.rng.IntN(2500)) * time.Millisecond
		c.ctxMode = "deadline"
		var cancelD context.CancelFunc
		ctx, cancelD = context.WithTimeout(ctx, d)
		defer cancelD()
	case n < 9:
		d := time.Duration(w.rng.IntN(800)) * time.Millisecond
		c.ctxMode = "cancel at " + d.String()
		timer = time.AfterFunc(d, cancel)
		defer timer.Stop()
	default:
		c.ctxMode = "cancel at commit" // the call cancels it itself, where it can (Tx, Begin)
	}
	if d, ok := ctx.Deadline(); ok {
		c.deadline = d
	}
	r := w.r
	c.start = time.Now()
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				r.violate("%v panicked: %v\n%s", c, p, stackOf(false))
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		err = run(w, ctx, c, cancel)
	}()
	r.mu.Lock()
	c.end, c.err = time.Now(), err
	r.mu.Unlock()
}

func (w *worker) key(c *call, suffix string) string {
	return fmt.Sprintf("s%d-w%d-c%d%s", w.r.seed, w.id, c.seq, suffix)
}

func (w *worker) exec(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys = writePlan, []string{w.key(c, "")}
	_, err := w.r.p.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", c.keys[0])
	return err
}

func (w *worker) idemExec(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys = writeIdem, []string{w.key(c, "")}
	_, err := w.r.p.Idempotent().Exec(ctx, "INSERT INTO idem (key) VALUES ($1) ON CONFLICT DO NOTHING", c.keys[0])
	return err
}

// k draws a key of table kv, whose value is "value k".
func (w *worker) k() int { return 1 + w.rng.IntN(100) }

func (w *worker) queryRow(ctx context.Context, c *call, qr func(context.Context, string, ...any) pgx.Row) error {
	k := w.k()
	var v string
	err := qr(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
	if err == nil && v != "value "+strconv.Itoa(k) {
		c.wrong = fmt.Sprintf("row %d read as %q", k, v)
	}
	return err
}

func (w *worker) query(ctx context.Context, c *call, q func(context.Context, string, ...any) (pgx.Rows, error)) error {
	k := w.k()
	rows, err := q(ctx, "SELECT k, v FROM kv WHERE k BETWEEN $1 AND $1 + 9 ORDER BY k", k)
	if err != nil {
		return err
	}
	defer rows.Close()
	return readKV(rows, k, min(10, 101-k), c)
}

// readKV reads rows (k, v) that must be k0, k0+1, ... n of them, each with its value.
func readKV(rows pgx.Rows, k0, n int, c *call) error {
	got := 0
	for rows.Next() {
		var k int
		var v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		if k != k0+got || v != "value "+strconv.Itoa(k) {
			c.wrong = fmt.Sprintf("row %d of a read from %d is (%d, %q)", got, k0, k, v)
		}
		got++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if got != n && c.wrong == "" {
		c.wrong = fmt.Sprintf("a read from %d returned %d rows, want %d", k0, got, n)
	}
	return nil
}

func (w *worker) do(ctx context.Context, c *call, _ context.CancelFunc) error {
	k := w.k()
	return w.r.p.Idempotent().Do(ctx, func(ctx context.Context) error {
		c.wrong = ""
		rows, err := w.r.p.Query(ctx, "SELECT k, v FROM kv WHERE k BETWEEN $1 AND $1 + 9 ORDER BY k", k)
		if err != nil {
			return err
		}
		defer rows.Close()
		return readKV(rows, k, min(10, 101-k), c)
	})
}

// sendBatch sends two inserts and a read in one batch (one implicit transaction: all or none).
func (w *worker) sendBatch(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys = writePlan, []string{w.key(c, "a"), w.key(c, "b")}
	k := w.k()
	b := &pgx.Batch{}
	b.Queue("INSERT INTO writes (key) VALUES ($1)", c.keys[0])
	b.Queue("INSERT INTO writes (key) VALUES ($1)", c.keys[1])
	b.Queue("SELECT v FROM kv WHERE k = $1", k)
	br := w.r.p.SendBatch(ctx, b)
	var v string
	_, err1 := br.Exec()
	_, err2 := br.Exec()
	err3 := br.QueryRow().Scan(&v)
	err4 := br.Close()
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return err
		}
	}
	if v != "value "+strconv.Itoa(k) {
		c.wrong = fmt.Sprintf("row %d read as %q in a batch", k, v)
	}
	return nil
}

func (w *worker) idemSendBatch(ctx context.Context, c *call, _ context.CancelFunc) error {
	k1, k2 := w.k(), w.k()
	b := &pgx.Batch{}
	b.Queue("SELECT v FROM kv WHERE k = $1", k1)
	b.Queue("SELECT v FROM kv WHERE k = $1", k2)
	br := w.r.p.Idempotent().SendBatch(ctx, b)
	var v1, v2 string
	err1 := br.QueryRow().Scan(&v1)
	err2 := br.QueryRow().Scan(&v2)
	err3 := br.Close()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return err
		}
	}
	if v1 != "value "+strconv.Itoa(k1) || v2 != "value "+strconv.Itoa(k2) {
		c.wrong = fmt.Sprintf("rows %d, %d read as %q, %q in a batch", k1, k2, v1, v2)
	}
	return nil
}

func (w *worker) copyFrom(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys = writePlan, []string{w.key(c, "a"), w.key(c, "b"), w.key(c, "c")}
	src := make([][]any, len(c.keys))
	for i, k := range c.keys {
		src[i] = []any{k}
	}
	n, err := w.r.p.CopyFrom(ctx, pgx.Identifier{"writes"}, []string{"key"}, pgx.CopyFromRows(src))
	if err == nil && n != int64(len(src)) {
		c.wrong = fmt.Sprintf("CopyFrom copied %d rows, want %d", n, len(src))
	}
	return err
}

// begin inserts in a transaction from Begin or BeginTx, then commits it (maybe cancelling the
// context as COMMIT goes out) or rolls it back.
func (w *worker) begin(ctx context.Context, c *call, cancel context.CancelFunc) error {
	var tx pgx.Tx
	var err error
	if c.method == "Begin" {
		tx, err = w.r.p.Begin(ctx)
	} else {
		levels := []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable}
		tx, err = w.r.p.BeginTx(ctx, pgx.TxOptions{IsoLevel: levels[w.rng.IntN(len(levels))]})
	}
	rollback := w.rng.IntN(4) == 0
	atCommit := time.Duration(w.rng.IntN(3000)) * time.Microsecond
	if err != nil {
		return err
	}
	key := w.key(c, "")
	c.keys = []string{key}
	c.write = writePlan
	if rollback {
		c.write = writeNone
	}
	if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", key); err != nil {
		tx.Rollback(context.Background())
		c.write = writeNone // an error inside a transaction aborts it
		return err
	}
	if rollback {
		return tx.Rollback(ctx)
	}
	if c.ctxMode == "cancel at commit" {
		time.AfterFunc(atCommit, cancel)
	}
	return tx.Commit(ctx)
}

func (w *worker) acquire(ctx context.Context, c *call, _ context.CancelFunc) error {
	write := w.rng.IntN(2) == 0
	k := w.k()
	conn, err := w.r.p.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if write {
		c.write, c.keys = writePlan, []string{w.key(c, "")}
		_, err := conn.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", c.keys[0])
		return err
	}
	var v string
	err = conn.QueryRow(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
	if err == nil && v != "value "+strconv.Itoa(k) {
		c.wrong = fmt.Sprintf("row %d read as %q", k, v)
	}
	return err
}

// errFn is the error a transaction function returns on purpose.
var errFn = errors.New("contract: fn gives up")

// tx inserts in Pool.Tx; fn may commit itself, fail on purpose, or have the context cancelled
// as COMMIT goes out.
func (w *worker) tx(ctx context.Context, c *call, cancel context.CancelFunc) error {
	key := w.key(c, "")
	c.write, c.keys = writeTx, []string{key}
	variant := w.rng.IntN(6)
	atCommit := time.Duration(w.rng.IntN(3000)) * time.Microsecond
	if variant == 0 {
		c.rename("Tx (fn commits)", &w.r.mu)
	}
	if variant == 1 {
		c.rename("Tx (fn fails)", &w.r.mu)
		c.write = writeNone
	}
	err := w.r.p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO writes (key) VALUES ($1)", key); err != nil {
			return err
		}
		if c.ctxMode == "cancel at commit" {
			time.AfterFunc(atCommit, cancel)
		}
		switch variant {
		case 0:
			return tx.Commit(ctx)
		case 1:
			return errFn
		}
		return nil
	})
	if variant == 1 && err == nil {
		c.wrong = "Tx returned nil though fn failed"
	}
	return err
}

// stdDB returns the worker's *sql.DB. It keeps no idle connection: database/sql holds its
// idle connections checked out of the pool, and a few of them would starve a small pool (the
// *sql.DB held across Close does keep one).
func (w *worker) stdDB() *sql.DB {
	if w.db == nil {
		w.db = w.r.p.StdDB()
		w.db.SetMaxIdleConns(0)
	}
	return w.db
}

func (w *worker) stdExec(ctx context.Context, c *call, _ context.CancelFunc) error {
	c.write, c.keys = writePlan, []string{w.key(c, "")}
	_, err := w.stdDB().ExecContext(ctx, "INSERT INTO writes (key) VALUES ($1)", c.keys[0])
	return err
}

func (w *worker) stdQueryRow(ctx context.Context, c *call, _ context.CancelFunc) error {
	k := w.k()
	var v string
	err := w.stdDB().QueryRowContext(ctx, "SELECT v FROM kv WHERE k = $1", k).Scan(&v)
	if err == nil && v != "value "+strconv.Itoa(k) {
		c.wrong = fmt.Sprintf("row %d read as %q", k, v)
	}
	return err
}

// faultKinds are the faults the schedule draws from.
var faultKinds = []string{
	"kill backends", "restart server", "pause server", "idle-session timeout", "proxy reset",
	"stall then reset", "slow responses", "black-hole idle flows", "refuse connections",
	"server gone", "dead flows", "host vanished",
}

// serverUpKinds are the faults that leave the server up and new connects answered (stalls
// are drawn shorter than the shortest ConnectTimeout here): one run in four draws from them
// only, and may pace no connection (checkReactions).
var serverUpKinds = []string{
	"kill backends", "idle-session timeout", "proxy reset", "stall then reset",
	"black-hole idle flows", "dead flows",
}

// pgbouncerLoginRetry is PgBouncer's server_login_retry default, which the harness keeps.
const pgbouncerLoginRetry = 15 * time.Second

// schedule injects faults one after another until stop, with gaps between them.
func (r *contractRun) schedule(stop <-chan struct{}, rng *rand.Rand) {
	ctx := context.Background()
	s := srv
	wait := func(d time.Duration) bool {
		select {
		case <-stop:
			return false
		case <-time.After(d):
			return true
		}
	}
	kinds, serverUp := faultKinds, rng.IntN(4) == 0
	if serverUp {
		kinds = serverUpKinds
		r.t.Logf("seed %d: the server stays up (faults %v)", r.seed, kinds)
	}
	for {
		if !wait(time.Duration(200+rng.IntN(600)) * time.Millisecond) {
			return
		}
		kind := kinds[rng.IntN(len(kinds))]
		d := time.Duration(300+rng.IntN(1700)) * time.Millisecond
		if serverUp {
			d = min(d, 900*time.Millisecond) // under the shortest ConnectTimeout (1 s)
		}
		f := &fault{kind: kind, start: time.Now(), hold: kind == "pause server" || kind == "stall then reset" || kind == "slow responses" || kind == "dead flows" || kind == "host vanished" || kind == "black-hole idle flows"}
		if r.bouncer && kind == "restart server" {
			// PgBouncer keeps its clients' connections and holds their statements while the
			// server is down, and after a failed server login it waits server_login_retry
			// (15 s by default) before trying again: to the pool, a statement that the server
			// accepted and does not answer, bounded by the caller's deadline only.
			f.hold, f.extra = true, pgbouncerLoginRetry
		}
		latency := time.Duration(200+rng.IntN(800)) * time.Millisecond
		switch kind {
		case "slow responses":
			f.extra = 2 * latency // a chunk sent at the end of the window arrives this much later, each way
		case "dead flows", "host vanished":
			f.extra = r.cfg.DeadFlowAfter() // a flow dead until the end of the window fails this much later
		}
		r.mu.Lock()
		r.faults = append(r.faults, f)
		r.mu.Unlock()
		var err error
		switch kind {
		case "kill backends":
			_, err = s.TerminateBackends(ctx)
		case "restart server":
			err = s.Restart(ctx, time.Duration(rng.IntN(1500))*time.Millisecond)
		case "pause server":
			if err = s.Pause(ctx); err == nil {
				time.Sleep(d)
				err = s.Unpause(ctx)
			}
		case "idle-session timeout":
			if err = s.SetIdleSessionTimeout(ctx, time.Duration(200+rng.IntN(600))*time.Millisecond); err == nil {
				time.Sleep(d)
				err = s.SetIdleSessionTimeout(ctx, 0)
			}
		case "proxy reset":
			r.proxy.ResetAll()
		case "stall then reset":
			r.proxy.StallResponses()
			time.Sleep(d)
			r.proxy.ResetAll()
			r.proxy.Resume()
		case "slow responses":
			r.proxy.SetLatency(latency)
			time.Sleep(d)
			r.proxy.SetLatency(0)
		case "black-hole idle flows":
			// Past PrePingAfter, as real NAT timeouts (minutes) are: a flow that can be dead is
			// always pinged before use. But the proxy counts a flow idle when no byte passed
			// either way, so a statement whose answer takes longer than the threshold (one
			// waiting on a lock) is swallowed while in flight: a real NAT would have seen the
			// client's TCP keepalive probes, the proxy cannot, and the proxy's kernel acks
			// everything, so only a deadline ends such a call (a hold fault). At the end the
			// swallowed flows are reset, as a NAT that forgot them answers with a RST.
			r.proxy.BlackholeIdle(r.cfg.PrePingAfter + time.Duration(300+rng.IntN(1000))*time.Millisecond)
			time.Sleep(d + time.Second)
			r.proxy.BlackholeIdle(0)
			r.proxy.ResetSwallowed()
		case "refuse connections":
			r.gate.refuse()
			time.Sleep(d)
			err = r.gate.open()
		case "dead flows", "host vanished":
			// Packets of the pool's flows dropped in the kernel (the gate's port): a NAT that
			// forgot its flows (open ones die, new ones pass), or a host gone from the network
			// (new connects time out too). Keepalive and TCP_USER_TIMEOUT see it, as they do
			// a real dead path.
			mode := faultproxy.DropExisting
			if kind == "host vanished" {
				mode = faultproxy.DropAll
			}
			var h *faultproxy.Hole
			if h, err = faultproxy.NewBlackHole(r.gate.port(), mode); err == nil {
				time.Sleep(d)
				err = h.Close()
			}
		case "server gone":
			// Every flow reset and new connections refused, for up to 6 s: longer than
			// AcquireTimeout, so that waiting for a connection must end at its bound.
			r.gate.refuse()
			r.proxy.ResetAll()
			time.Sleep(time.Duration(500+rng.IntN(5500)) * time.Millisecond)
			err = r.gate.open()
		}
		r.mu.Lock()
		f.end = time.Now()
		r.tally.faults[kind]++
		r.mu.Unlock()
		if err != nil {
			r.violate("harness: fault %s failed: %v", kind, err)
		}
	}
}

// liftAll undoes whatever fault may be left, so that the run ends on a healthy target.
func (r *contractRun) liftAll() {
	ctx := context.Background()
	r.proxy.Resume()
	r.proxy.SetLatency(0)
	r.proxy.BlackholeIdle(0)
	if err := r.gate.open(); err != nil {
		r.violate("harness: reopening the gate: %v", err)
	}
	srv.Unpause(ctx) // an error here means it was not paused
	if err := srv.SetIdleSessionTimeout(ctx, 0); err != nil {
		r.violate("harness: idle-session timeout off: %v", err)
	}
	if err := srv.StartServer(ctx); err != nil {
		r.violate("harness: server start: %v", err)
	}
}

// bound is how long c may take by the contract, with the faults seen so far: by the caller's
// deadline if it has one; otherwise waiting for a connection within AcquireTimeout, plus the
// statement's own time, which a fault that withholds answers (a paused server, stalled
// responses) stretches by as long as it overlapped the call, plus a second for the statements
// themselves (all short) and the rollback or release that follows.
func (r *contractRun) bound(c *call, now time.Time) time.Duration {
	end := c.end
	if end.IsZero() {
		end = now
	}
	held := time.Duration(0)
	for _, f := range r.faults {
		fend := f.end
		if fend.IsZero() {
			fend = now
		}
		if f.hold && f.start.Before(end) && fend.Add(f.extra).After(c.start) {
			held += minTime(fend, end).Sub(maxTime(f.start, c.start)) + f.extra
		}
	}
	b := r.cfg.AcquireTimeout + held + time.Second
	if strings.HasPrefix(c.method, "StdDB") {
		// database/sql: no AcquireTimeout; up to three connection attempts.
		b += 3 * r.cfg.ConnectTimeout
	}
	if !c.deadline.IsZero() {
		b = min(b, c.deadline.Sub(c.start))
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// monitor checks, until stop, that no call runs past its bound and that Stats stay consistent.
func (r *contractRun) monitor(stop <-chan struct{}) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		r.checkStats(r.p.Stats(), "")
		now := time.Now()
		r.mu.Lock()
		var late []string
		for _, c := range r.calls {
			if c.flagged {
				continue
			}
			end := c.end
			if end.IsZero() {
				end = now
			}
			b := r.bound(c, now)
			if took := end.Sub(c.start); took > b+*contractSlack {
				c.flagged = true
				state := "still running"
				if !c.end.IsZero() {
					state = "returned"
				}
				late = append(late, fmt.Sprintf("%v %s after %v, past its bound %v + %v slack (err %v)",
					c, state, took.Round(time.Millisecond), b.Round(time.Millisecond), *contractSlack, c.err))
			}
		}
		dump := len(late) > 0 && !r.dumped
		r.dumped = r.dumped || dump
		r.mu.Unlock()
		for _, l := range late {
			if dump {
				l += "\ngoroutines of the pool:\n" + truncate(poolGoroutines(), 8000)
				dump = false
			}
			r.violate("%s", l)
		}
	}
}

func (r *contractRun) checkStats(s pool.Stats, when string) {
	switch {
	case s.IdleHorizon != 0 && s.IdleHorizon < 2*r.cfg.PingTimeout:
		r.violate("Stats%s: idle horizon %v below its floor 2*PingTimeout %v", when, s.IdleHorizon, 2*r.cfg.PingTimeout)
	case s.TotalConns > s.MaxConns:
		r.violate("Stats%s: Total %d > Max %d: %+v", when, s.TotalConns, s.MaxConns, s)
	case s.TotalConns < 0 || s.IdleConns < 0 || s.AcquiredConns < 0 || s.OverflowConns < 0 || s.Waiting < 0:
		r.violate("Stats%s: a negative count: %+v", when, s)
	case s.IdleConns+s.AcquiredConns > s.TotalConns:
		r.violate("Stats%s: idle %d + in use %d > total %d: %+v", when, s.IdleConns, s.AcquiredConns, s.TotalConns, s)
	case s.AcquireCount < 0 || s.AcquireTimeouts < 0 || s.FailedPings < 0 || s.Opened < 0 || s.Destroyed < 0:
		r.violate("Stats%s: a negative counter: %+v", when, s)
	}
}

func (r *contractRun) checkStatsAfterClose() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := r.p.Stats()
		if s.TotalConns == 0 && s.AcquiredConns == 0 && s.Waiting == 0 {
			r.checkStats(s, " after Close")
			return
		}
		if time.Now().After(deadline) {
			r.violate("Stats 5 s after Close and the release of everything held: %+v", s)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// held is what a caller holds while the pool closes.
type held struct {
	what    string
	release func()
	after   func(r *contractRun) // checks that what was held is dead, then releases it
}

// hold makes a caller hold something across Close: nothing, unclosed Rows, an acquired
// connection, an open transaction, or a *sql.DB with an idle connection.
func (r *contractRun) hold(rng *rand.Rand) held {
	ctx := context.Background()
	nothing := held{what: "nothing", release: func() {}, after: func(*contractRun) {}}
	switch rng.IntN(6) {
	case 5:
		return r.holdWaiters()
	case 1:
		rows, err := r.p.Query(ctx, "SELECT i FROM generate_series(1, 1000000) i")
		if err != nil {
			r.t.Logf("holding rows: %v", err)
			return nothing
		}
		rows.Next()
		var once sync.Once
		release := func() { once.Do(rows.Close) }
		return held{what: "rows", release: release, after: func(r *contractRun) {
			for rows.Next() {
			}
			if rows.Err() == nil {
				r.violate("rows held across Close read to the end without an error")
			}
			r.noPanic("closing rows held across Close", release)
		}}
	case 2:
		c, err := r.p.Acquire(ctx)
		if err != nil {
			r.t.Logf("holding a connection: %v", err)
			return nothing
		}
		var once sync.Once
		release := func() { once.Do(c.Release) }
		return held{what: "a connection", release: release, after: func(r *contractRun) {
			ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := c.Exec(ectx, "SELECT 1"); err == nil {
				r.violate("a connection held across Close still works")
			}
			r.noPanic("releasing a connection held across Close", release)
		}}
	case 3:
		tx, err := r.p.Begin(ctx)
		if err != nil {
			r.t.Logf("holding a transaction: %v", err)
			return nothing
		}
		var once sync.Once
		release := func() { once.Do(func() { tx.Rollback(context.Background()) }) }
		return held{what: "a transaction", release: release, after: func(r *contractRun) {
			ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := tx.Commit(ectx); err == nil {
				r.violate("a transaction held across Close committed")
			}
			r.noPanic("rolling back a transaction held across Close", release)
		}}
	case 4:
		db := r.p.StdDB()
		if err := db.PingContext(ctx); err != nil {
			r.t.Logf("holding a *sql.DB: %v", err)
			db.Close()
			return nothing
		}
		var once sync.Once
		release := func() { once.Do(func() { db.Close() }) }
		return held{what: "a *sql.DB", release: release, after: func(r *contractRun) {
			r.noPanic("closing a *sql.DB held across Close", release)
		}}
	}
	return nothing
}

func (r *contractRun) noPanic(what string, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			r.violate("%s panicked: %v\n%s", what, p, stackOf(false))
		}
	}()
	fn()
}

// checkClosed checks the errors around Close: no call that ended before Close began returned
// ErrClosed, and after Close every method of the pool returns ErrClosed at once (and writes
// nothing: its keys are checked with the others).
func (r *contractRun) checkClosed(closeStart time.Time) {
	r.mu.Lock()
	for _, c := range r.calls {
		if !c.end.IsZero() && c.end.Before(closeStart) && errors.Is(c.err, pool.ErrClosed) {
			r.violations = append(r.violations, fmt.Sprintf("%v returned ErrClosed before Close: %v", c, c.err))
		}
	}
	r.mu.Unlock()
	w := &worker{r: r, id: -1, rng: rand.New(rand.NewPCG(r.seed, 1<<32))}
	for _, op := range ops {
		if strings.HasPrefix(op.name, "StdDB") || op.name == "Exec (read-only role)" {
			continue // database/sql's own error ("sql: database is closed"); another pool
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.one(op.name, op.run)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			r.violate("%s after Close did not return within 5 s", op.name)
			continue
		}
		r.mu.Lock()
		c := r.calls[len(r.calls)-1]
		r.mu.Unlock()
		if !errors.Is(c.err, pool.ErrClosed) {
			r.violate("%v after Close: want ErrClosed, got %v", c, c.err)
		}
	}
}

var goroutineHeader = regexp.MustCompile(`^goroutine (\d+) `)

// goroutineIDs returns the ids of the goroutines of the pool running now.
func goroutineIDs() map[string]bool {
	ids := map[string]bool{}
	for _, g := range strings.Split(string(stackOf(true)), "\n\n") {
		if m := goroutineHeader.FindStringSubmatch(g); m != nil && isPoolGoroutine(g) {
			ids[m[1]] = true
		}
	}
	return ids
}

// poolGoroutinesOf returns the stacks of the goroutines of the pool not in baseline.
func poolGoroutinesOf(baseline map[string]bool) string {
	var out []string
	for _, g := range strings.Split(string(stackOf(true)), "\n\n") {
		m := goroutineHeader.FindStringSubmatch(g)
		if m != nil && !baseline[m[1]] && (isPoolGoroutine(g) || strings.Contains(g, "database/sql.")) {
			out = append(out, g)
		}
	}
	return truncate(strings.Join(out, "\n\n"), 8000)
}

// checkGoroutines fails the run when goroutines of the pool (or of a *sql.DB from StdDB) that
// were not running before it are left after Close.
func (r *contractRun) checkGoroutines(baseline map[string]bool) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := poolGoroutinesOf(baseline)
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			r.violate("goroutines of the pool left 5 s after Close:\n%s", left)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkSockets: once the pools are closed, the process holds no socket to the gate (the
// server's address as the pool sees it), the second descriptors of hedged pre-pings (which
// outlive pgx's own) included.
func (r *contractRun) checkSockets() {
	_, port, err := net.SplitHostPort(r.gate.addr)
	if err != nil {
		r.violate("harness: gate address %q: %v", r.gate.addr, err)
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := socketsTo(port)
		if err != nil {
			r.t.Logf("sockets not counted: %v", err)
			return
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.violate("%d sockets to the server still open 5 s after Close", n)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// socketsTo counts the process's TCP sockets whose remote port is port (decimal), from
// /proc/self/fd and /proc/net/tcp{,6} (Linux).
func socketsTo(port string) (int, error) {
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0, err
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasSuffix(f[2], want) && inodes[f[9]] {
				n++
			}
		}
	}
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n..."
}

// claimsNotSent reports whether err says that nothing reached the server.
func claimsNotSent(err error) bool {
	return errors.Is(err, pool.ErrPoolTimeout) || errors.Is(err, pool.ErrClosed) ||
		errors.Is(err, driver.ErrBadConn) || retry.Classify(err) == retry.NotSent
}

// checkWrites reads the tables over a pool of its own and holds every write to its promise.
func (r *contractRun) checkWrites() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newPool(r.t, r.dsn, func(c *config.Config) { c.Size, c.Overflow = 1, 0 })
	defer p.Close()
	stored := map[string]int{}
	for _, q := range []string{"SELECT key, count(*) FROM writes GROUP BY key", "SELECT key, count(*) FROM idem GROUP BY key"} {
		rows, err := p.Query(ctx, q)
		if err != nil {
			r.violate("reading the writes: %v", err)
			return
		}
		for rows.Next() {
			var k string
			var n int
			if err := rows.Scan(&k, &n); err != nil {
				r.violate("reading the writes: %v", err)
				return
			}
			stored[k] += n
		}
		if err := rows.Err(); err != nil {
			r.violate("reading the writes: %v", err)
			return
		}
	}
	r.mu.Lock()
	calls := slices.Clone(r.calls)
	r.mu.Unlock()
	known := map[string]bool{}
	for _, c := range calls {
		if c.wrong != "" {
			r.violate("%v returned a wrong result: %s (err %v)", c, c.wrong, c.err)
		}
		var te *pool.TimeoutError
		if errors.As(c.err, &te) && te.Bound == "" {
			r.violate("%v: a TimeoutError that does not name the bound that ran out: %v", c, c.err)
		}
		if c.end.IsZero() {
			continue // reported as never returning
		}
		if c.check != nil {
			if v := c.check(c.err); v != "" {
				r.violate("%v: %s (err %v)", c, v, c.err)
			}
		}
		var ns []int
		for _, k := range c.keys {
			known[k] = true
			ns = append(ns, stored[k])
		}
		if len(ns) == 0 {
			continue
		}
		n := ns[0]
		for _, m := range ns {
			if m > 1 {
				r.violate("%v: a row stored %d times (rows stored: %v; err %v)", c, m, ns, c.err)
				n = -1
				break
			}
			if m != n {
				r.violate("%v: some of its rows stored and others not (%v; err %v)", c, ns, c.err)
				n = -1
				break
			}
		}
		if n < 0 {
			continue
		}
		var amb *pool.AmbiguousCommitError
		switch {
		case c.write == writeNone && n != 0:
			r.violate("%v: a write rolled back is stored (err %v)", c, c.err)
		case c.write == writeNone:
		case c.err == nil && n != 1:
			r.violate("%v: an acknowledged write is not stored", c)
		case c.err == nil:
		case c.write == writeTx && n == 1 && !errors.As(c.err, &amb):
			r.violate("%v: the write is stored but the error does not say the outcome is unknown: %v (%T)", c, c.err, c.err)
		case c.write == writePlan && n == 1 && claimsNotSent(c.err):
			r.violate("%v: the write is stored but the error says nothing was sent: %v (%T)", c, c.err, c.err)
		}
	}
	for k, n := range stored {
		if !known[k] {
			r.violate("row %q stored %d times by no call that returned", k, n)
		}
	}
}

// summarize counts the calls by method and outcome.
func (r *contractRun) summarize() {
	r.mu.Lock()
	defer r.mu.Unlock()
	byErr := map[string]int{}
	for _, c := range r.calls {
		v := r.tally.calls[c.method]
		if c.err == nil {
			v[0]++
		} else {
			v[1]++
			byErr[errClass(c.err)]++
		}
		r.tally.calls[c.method] = v
	}
	var es []string
	for e, n := range byErr {
		es = append(es, fmt.Sprintf("%s %d", e, n))
	}
	sort.Strings(es)
	r.t.Logf("seed %d: %d calls, %d faults; errors by kind: %s\n%s", r.seed, len(r.calls), len(r.faults), strings.Join(es, ", "), r.tally.String())
}

// errClass names the kind of a call's error for the summary.
func errClass(err error) string {
	var amb *pool.AmbiguousCommitError
	var re *retry.Error
	switch {
	case errors.As(err, &amb):
		return "ambiguous-commit"
	case errors.Is(err, pool.ErrPoolTimeout):
		return "pool-timeout"
	case errors.Is(err, pool.ErrClosed):
		return "closed"
	case errors.Is(err, errFn):
		return "fn"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.As(err, &re):
		return "retry-gave-up(" + re.Class.String() + ")"
	}
	return retry.Classify(err).String()
}

// gate forwards TCP connections from a loopback port to target, and can refuse new ones (its
// listener closed, so connects get a RST) while letting open ones run.
type gate struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
	wg           sync.WaitGroup
}

func startGate(t testing.TB, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	g.serve(ln)
	t.Cleanup(g.close)
	return g
}

func (g *gate) serve(ln net.Listener) {
	g.ln = ln
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.DialTimeout("tcp", g.target, 5*time.Second)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns[c], g.conns[s] = struct{}{}, struct{}{}
			g.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				dst.Close()
				src.Close()
				g.mu.Lock()
				delete(g.conns, dst)
				delete(g.conns, src)
				g.mu.Unlock()
			}
			g.wg.Go(func() { pipe(s, c) })
			g.wg.Go(func() { pipe(c, s) })
		}
	})
}

// port is the gate's port.
func (g *gate) port() int {
	_, p, _ := net.SplitHostPort(g.addr)
	n, _ := strconv.Atoi(p)
	return n
}

// refuse closes the listener: connects are refused until open.
func (g *gate) refuse() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
}

// open listens again on the same address.
func (g *gate) open() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return err
	}
	g.serve(ln)
	return nil
}

func (g *gate) close() {
	g.refuse()
	g.mu.Lock()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}
