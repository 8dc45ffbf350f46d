package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// The replica faults' settings.
const (
	replicaLagBound   = 1 << 20 // the cluster's WithMaxReplayLag: 1 MiB
	replicaFillerRows = 4000    // rows of 1 kB written while replay is paused: about 4 MiB of WAL
	replicaFaultFrom  = 0.3     // the fault begins at this fraction of -duration
	replicaFaultTo    = 0.7     // and is undone at this one
)

// The replica faults' statements: a read that says where it ran, and the read back of a write.
const (
	replicaReadSQL = "SELECT pg_is_in_recovery() FROM kv WHERE k = $1"
	readBackSQL    = "SELECT count(*) FROM writes WHERE key = $1"
)

// replicaFaults are the faults of a read replica, run on a primary and two streaming standbys
// of their own, comparing pgsteady's replica reads with reading everything from the primary.
var replicaFaults = []fault{
	{
		name: "replica-kill", label: "replica killed (server stopped, then started)",
		title: fmt.Sprintf("a primary and two standbys; from %.0f%% to %.0f%% of the run the first standby's server is down (fast shutdown: its sessions get 57P01)",
			replicaFaultFrom*100, replicaFaultTo*100),
		replica: func(ctx context.Context, r *replicaRun) error {
			if err := r.at(ctx, replicaFaultFrom); err != nil {
				return err
			}
			if err := r.pair.Standby.StopServer(ctx); err != nil {
				return err
			}
			if err := r.at(ctx, replicaFaultTo); err != nil {
				return err
			}
			return r.pair.Standby.StartServer(ctx)
		},
	},
	{
		name: "replica-lag", label: "replica lagging (replay paused)",
		title: fmt.Sprintf("a primary and two standbys; from %.0f%% to %.0f%% of the run the first standby's replay is paused (pg_wal_replay_pause()) "+
			"and about 4 MiB of WAL is written, past the cluster's 1 MiB lag bound", replicaFaultFrom*100, replicaFaultTo*100),
		replica: func(ctx context.Context, r *replicaRun) error {
			if err := r.at(ctx, replicaFaultFrom); err != nil {
				return err
			}
			if err := exec(ctx, r.pair.Standby.AdminDSN(), "SELECT pg_wal_replay_pause()"); err != nil {
				return err
			}
			filler := fmt.Sprintf("CREATE TABLE filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, %d) g", replicaFillerRows)
			if err := exec(ctx, r.primaryDSN, filler); err != nil {
				return err
			}
			if err := r.at(ctx, replicaFaultTo); err != nil {
				return err
			}
			return exec(ctx, r.pair.Standby.AdminDSN(), "SELECT pg_wal_replay_resume()")
		},
	},
}

// replicaRun is one replica fault in progress.
type replicaRun struct {
	pair       *pgharness.Pair
	primaryDSN string // a database of the primary
	start      time.Time
	duration   time.Duration
}

// at waits until fraction of the run has passed.
func (r *replicaRun) at(ctx context.Context, fraction float64) error {
	return sleep(ctx, time.Until(r.start.Add(time.Duration(fraction*float64(r.duration)))))
}

// replicaClient is one way of reading under a replica fault. Its methods are safe for
// concurrent use.
type replicaClient interface {
	name() string
	// read reads a row of kv and says whether a standby answered.
	read(ctx context.Context, k int) (onStandby bool, err error)
	// write inserts key, then reads it back at once, as a request after an upload does.
	write(ctx context.Context, key string) error
	readBack(ctx context.Context, key string) (found bool, err error)
	stats() string
	close()
}

// clusterClient reads through c.Replica(), reads back with pool.WithReadYourWrites (unless
// plain: the control that shows what read-your-writes prevents), writes with c.Exec.
type clusterClient struct {
	c     *pool.Cluster
	plain bool
}

func (cc clusterClient) name() string {
	if cc.plain {
		return plainName
	}
	return "pgsteady, replica reads"
}

// plainName is the control client's: its stale reads back are expected.
const plainName = "control: replica reads without read-your-writes"

func (cc clusterClient) read(ctx context.Context, k int) (standby bool, err error) {
	err = cc.c.Replica().QueryRow(ctx, replicaReadSQL, k).Scan(&standby)
	return standby, err
}

func (cc clusterClient) write(ctx context.Context, key string) error {
	_, err := cc.c.Exec(ctx, writeSQL, key)
	return err
}

func (cc clusterClient) readBack(ctx context.Context, key string) (bool, error) {
	var n int
	if !cc.plain {
		ctx = pool.WithReadYourWrites(ctx)
	}
	err := cc.c.Replica().QueryRow(ctx, readBackSQL, key).Scan(&n)
	return n > 0, err
}

func (cc clusterClient) stats() string {
	s := cc.c.Stats()
	out := fmt.Sprintf("checks %d, reads moved off a failing replica %d, reads on the primary (no replica qualified %d, read-your-writes %d)",
		s.Checks, s.ReplicaFallbacks, s.PrimaryReadsNoReplica, s.PrimaryReadsForWrites)
	for _, m := range s.Members {
		out += fmt.Sprintf("; %s %s: reads %d, read failures %d, check failures %d", m.Role, m.Addr, m.Reads, m.ReadFailures, m.CheckFailures)
	}
	return out
}

func (cc clusterClient) close() { cc.c.Close() }

// primaryClient does the same on the primary alone: reads through p.Idempotent(), writes with
// p.Exec.
type primaryClient struct{ p *pool.Pool }

func (primaryClient) name() string { return "pgsteady, primary only" }

func (pc primaryClient) read(ctx context.Context, k int) (standby bool, err error) {
	err = pc.p.Idempotent().QueryRow(ctx, replicaReadSQL, k).Scan(&standby)
	return standby, err
}

func (pc primaryClient) write(ctx context.Context, key string) error {
	_, err := pc.p.Exec(ctx, writeSQL, key)
	return err
}

func (pc primaryClient) readBack(ctx context.Context, key string) (bool, error) {
	var n int
	err := pc.p.Idempotent().QueryRow(ctx, readBackSQL, key).Scan(&n)
	return n > 0, err
}

func (pc primaryClient) stats() string {
	s := pc.p.Stats()
	return fmt.Sprintf("retries not-sent=%d conn-lost=%d", s.Retries.NotSent, s.Retries.ConnLost)
}

func (pc primaryClient) close() { pc.p.Close() }

// replicaResult is one row of the replica table: one client under one replica fault.
type replicaResult struct {
	fault, client          string
	reads, readErrs        int // reads of kv and reads back, failed ones included
	onStandby              int // reads of kv a standby answered
	kvReads                int
	readBacks, stale       int // reads back of a write just acknowledged, and those that missed it
	writes, writeErrs      int
	p50, p99               time.Duration // of every read, failed ones included
	firstErr, stats, notes string
}

// replicaTally counts what one client's callers saw. Its methods are safe for concurrent use.
type replicaTally struct {
	mu  sync.Mutex
	r   replicaResult
	lat []time.Duration
}

func (t *replicaTally) readDone(d time.Duration, kv, standby, found bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lat = append(t.lat, d)
	t.r.reads++
	switch {
	case err != nil:
		t.r.readErrs++
		if t.r.firstErr == "" {
			t.r.firstErr = err.Error()
		}
	case kv:
		t.r.kvReads++
		if standby {
			t.r.onStandby++
		}
	default:
		t.r.readBacks++
		if !found {
			t.r.stale++
		}
	}
}

func (t *replicaTally) writeDone(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.r.writes++
	if err != nil {
		t.r.writeErrs++
		if t.r.firstErr == "" {
			t.r.firstErr = err.Error()
		}
	}
}

// runReplicaFault starts a primary and two standbys, opens the clients (replica reads, primary
// only, and the control), each on a database of its own, and runs the workload on both at once beside the fault: w.readers goroutines
// reading kv, w.writers goroutines each inserting a row and reading it back at once.
func (b *bench) runReplicaFault(ctx context.Context, f fault) (results []replicaResult, err error) {
	b.progress("fault %q: starting a primary and two streaming standbys", f.name)
	pair, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, pair.Close()) }()
	standby2, err := pair.AddStandby(ctx, pgharness.Options{})
	if err != nil {
		return nil, err
	}
	var clients []replicaClient
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	run := &replicaRun{pair: pair, duration: b.duration}
	for i := range 3 {
		dsn, err := pair.Primary.NewDatabase(ctx)
		if err != nil {
			return nil, err
		}
		if err := exec(ctx, dsn, schemaSQL); err != nil {
			return nil, fmt.Errorf("schema: %w", err)
		}
		run.primaryDSN = dsn
		cfgs := make([]*config.Config, 3)
		for j, s := range []*pgharness.Server{pair.Primary, pair.Standby, standby2} {
			if cfgs[j], err = config.Parse(pgharness.WithAddr(dsn, s.Addr())); err != nil {
				return nil, err
			}
		}
		if i == 1 {
			p, err := pool.New(ctx, cfgs[0])
			if err != nil {
				return nil, err
			}
			clients = append(clients, primaryClient{p})
			continue
		}
		c, err := pool.NewCluster(ctx, cfgs[0], cfgs[1:], pool.WithMaxReplayLag(replicaLagBound))
		if err != nil {
			return nil, err
		}
		clients = append(clients, clusterClient{c: c, plain: i == 2})
		// The standbys take reads once they have replayed the new database.
		for s := c.Stats(); !s.Members[1].Readable || !s.Members[2].Readable; s = c.Stats() {
			if err := sleep(ctx, 20*time.Millisecond); err != nil {
				return nil, err
			}
		}
	}

	w := b.work
	b.progress("fault %q: workload for %v (%d readers, %d writers per client)", f.name, b.duration, w.readers, w.writers)
	tallies := make([]*replicaTally, len(clients))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		t := &replicaTally{r: replicaResult{fault: f.label, client: c.name()}}
		tallies[i] = t
		for g := range w.readers + w.writers {
			wg.Go(func() { w.replicaWorker(ctx, c, t, g < w.readers, fmt.Sprintf("w%d-", g), stop) })
		}
	}
	run.start = time.Now()
	injectErr := f.replica(ctx, run)
	if injectErr == nil {
		injectErr = run.at(ctx, 1)
	}
	close(stop)
	wg.Wait()
	if injectErr != nil {
		return nil, fmt.Errorf("inject: %w", injectErr)
	}
	for i, c := range clients {
		t := tallies[i]
		slices.Sort(t.lat)
		t.r.p50, t.r.p99 = percentile(t.lat, 50), percentile(t.lat, 99)
		t.r.stats, t.r.notes = c.stats(), f.title
		results = append(results, t.r)
	}
	return results, nil
}

// replicaWorker runs one worker of a replica fault until stop is closed: a reader of kv, or a
// writer that reads each write back at once.
func (w workload) replicaWorker(ctx context.Context, c replicaClient, t *replicaTally, reader bool, prefix string, stop <-chan struct{}) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, w.timeout)
		start := time.Now()
		if reader {
			standby, err := c.read(rctx, 1+i%kvRows)
			t.readDone(time.Since(start), true, standby, false, err)
		} else {
			key := fmt.Sprintf("%s%d", prefix, i)
			err := c.write(rctx, key)
			t.writeDone(err)
			if err == nil {
				start = time.Now()
				found, err := c.readBack(rctx, key)
				t.readDone(time.Since(start), false, false, found, err)
			}
		}
		cancel()
		if sleep(ctx, w.pause) != nil {
			return
		}
	}
}

// renderReplicas writes the replica faults' table and details, or nothing without them.
func renderReplicas(w io.Writer, results []replicaResult) {
	if len(results) == 0 {
		return
	}
	fmt.Fprintln(w, "\nRead replicas (a primary and two streaming standbys; reads of kv through c.Replica() or the primary's "+
		"p.Idempotent(); each write (Exec) read back at once, through c.Replica() with pool.WithReadYourWrites or on the primary):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| fault | client | reads | read errors | stale reads back (of) | writes | write errors | read p50 | read p99 | reads of kv served by a standby |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d (%d) | %d | %d | %s | %s | %.0f %% |\n", r.fault, r.client, r.reads, r.readErrs,
			r.stale, r.readBacks, r.writes, r.writeErrs, formatDuration(r.p50), formatDuration(r.p99), 100*float64(r.onStandby)/float64(max(1, r.kvReads)))
	}
	fault := ""
	for _, r := range results {
		if r.fault != fault {
			fault = r.fault
			fmt.Fprintf(w, "\n%s:\n- %s\n", fault, r.notes)
		}
		fmt.Fprintf(w, "- %s: %s\n", r.client, r.stats)
		if r.firstErr != "" {
			fmt.Fprintf(w, "  - first error: `%s`\n", shorten(r.firstErr, 240))
		}
	}
}

// replicaMissedBar lists where pgsteady missed the bar under a replica fault: an error, or a
// stale read back (but in the control, which reads back without read-your-writes).
func replicaMissedBar(results []replicaResult) []string {
	var out []string
	for _, r := range results {
		stale := r.stale
		if r.client == plainName {
			stale = 0
		}
		if r.readErrs+r.writeErrs+stale > 0 {
			out = append(out, fmt.Sprintf("%s, %s: %d read errors, %d write errors, %d stale reads back", r.fault, r.client, r.readErrs, r.writeErrs, r.stale))
		}
	}
	return out
}
