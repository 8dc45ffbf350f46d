package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

// Cluster is a primary and its read replicas, each reached through its own [Pool] with the
// same resilience. Writes, [Cluster.Tx] and everything called on the Cluster itself go to the
// primary; [Cluster.Replica] returns a [Reader] whose reads go to a replica that is healthy and
// within the lag bound, and to the primary when none is. It is safe for concurrent use, and,
// like *Pool, it satisfies sqlc's DBTX (a DBTX for writes; a Reader is one for reads).
//
// A background loop asks every member, every [WithLagCheckEvery] (default
// [DefaultLagCheckEvery]), where it is in the WAL: one round trip per member on a connection of
// its own pool (pg_is_in_recovery, pg_current_wal_insert_lsn on the primary,
// pg_last_wal_replay_lsn and pg_last_xact_replay_timestamp on a replica). A replica's lag is the primary's position
// minus its replay position, in bytes; one more than [WithMaxReplayLag] (default
// [DefaultMaxReplayLag]) behind, one whose check failed, or one on which a read failed with a
// connection error, takes no reads until a later check finds it back. A replica found out of
// recovery while the primary is unreachable (two checks in a row), in recovery or read-only
// for every session becomes the primary; a former primary found in recovery joins the readers.
//
// Read-your-writes: see [WithReadYourWrites].
type Cluster struct {
	members  []*member // the primary as given first, then the replicas in order
	primary  atomic.Pointer[member]
	maxLag   int64
	maxDelay time.Duration
	every    time.Duration
	minGap   time.Duration // between two checks that reads asked for
	log      *slog.Logger

	rr     atomic.Uint64 // where the search for the least loaded replica starts
	writes writeMark
	stats  clusterCounters

	kick      chan struct{} // a read-your-writes read found no replica caught up: check soon
	stop      chan struct{}
	life      context.Context
	endLife   context.CancelFunc
	bg        sync.WaitGroup
	closed    atomic.Bool
	closeOnce sync.Once
	discover  bool                            // during NewClusterHosts's first check: any writable member may become the primary
	moved     atomic.Pointer[context.Context] // canceled when the primary changes, then replaced
	endMoved  context.CancelFunc              // cancels *moved; used by settle, and by Close once the checks ended
}

// DefaultMaxReplayLag is how far behind the primary, in bytes of WAL, a replica may be and
// still take reads: 16 MiB, one WAL segment.
const DefaultMaxReplayLag = 16 << 20

// DefaultLagCheckEvery is how often a [Cluster] measures its members' positions: 1 s.
const DefaultLagCheckEvery = time.Second

// maxMembers bounds a cluster's size: a read remembers the members it tried in a uint64.
const maxMembers = 64

// ClusterOption changes how [NewCluster] builds a [Cluster].
type ClusterOption func(*clusterOptions)

type clusterOptions struct {
	maxLag   int64
	maxDelay time.Duration
	every    time.Duration
	member   []Option
}

// WithMaxReplayLag sets how far behind the primary, in bytes of WAL, a replica may be and
// still take reads. Default [DefaultMaxReplayLag]; 0 allows only a replica that has replayed
// all the primary had written at the last check. Must be >= 0.
func WithMaxReplayLag(bytes int64) ClusterOption { return func(o *clusterOptions) { o.maxLag = bytes } }

// WithMaxReplayDelay also bounds a replica's lag in time: one that is behind (some bytes of WAL
// not replayed) and whose last replayed transaction committed on the primary more than d ago
// (pg_last_xact_replay_timestamp) takes no reads. After the primary was idle for long, its next
// write makes every replica too old until they replay it, a moment later. Default 0: no time
// bound, the byte bound alone.
func WithMaxReplayDelay(d time.Duration) ClusterOption {
	return func(o *clusterOptions) { o.maxDelay = d }
}

// WithLagCheckEvery sets how often the cluster measures its members (one short query per
// member on a pooled connection). Default [DefaultLagCheckEvery]; at least 10 ms. Reads that
// need a write a replica has not been seen to replay also ask for a check, at most twenty
// times as often.
func WithLagCheckEvery(d time.Duration) ClusterOption { return func(o *clusterOptions) { o.every = d } }

// WithMemberOptions gives every member's [Pool] these options (a logger, an observer, pgx
// edits). The cluster logs through the last [WithLogger] among them.
func WithMemberOptions(opts ...Option) ClusterOption {
	return func(o *clusterOptions) { o.member = append(o.member, opts...) }
}

// NewCluster builds a cluster over the primary and the replicas (each config from
// [config.Parse] or [config.FromEnv]; they are copied). The primary's pool starts as [New]
// says, so New's errors end NewCluster; the replicas' pools start lazily, so that a replica
// down at start-up costs reads nothing: it takes reads once a check finds it. NewCluster
// measures every member once before it returns; ctx bounds the start-up only.
func NewCluster(ctx context.Context, primary *config.Config, replicas []*config.Config, opts ...ClusterOption) (*Cluster, error) {
	if primary == nil {
		return nil, errors.New("pool: nil primary config")
	}
	specs := []memberSpec{{cfg: primary}}
	for i, rc := range replicas {
		if rc == nil {
			return nil, fmt.Errorf("pool: nil config for replica %d", i)
		}
		lazy := *rc
		lazy.LazyStart = true
		specs = append(specs, memberSpec{cfg: &lazy})
	}
	return newCluster(ctx, specs, false, opts)
}

// NewClusterHosts builds a cluster over every host of cfg's connection string (a multi-host
// one: host=a,b,c or postgres://a:5432,b:5432/db), one pool per host, and discovers their
// roles: the first check makes the host found out of recovery the primary, the hosts in
// recovery the replicas. target_session_attrs does not apply (each pool reaches its own host).
// Every pool starts lazily; NewClusterHosts returns after the first check, with an error only
// for a bad configuration (a cluster with no primary reachable yet sends its calls to the first
// host until a check finds one).
func NewClusterHosts(ctx context.Context, cfg *config.Config, opts ...ClusterOption) (*Cluster, error) {
	if cfg == nil {
		return nil, errors.New("pool: nil config")
	}
	pc, err := cfg.PgxPoolConfig()
	if err != nil {
		return nil, err
	}
	var specs []memberSpec
	for _, h := range hostsOf(pc.ConnConfig) {
		lazy := *cfg
		lazy.LazyStart = true
		specs = append(specs, memberSpec{cfg: &lazy, opts: []Option{WithPgxConfig(func(pc *pgxpool.Config) {
			cc := pc.ConnConfig
			cc.Host, cc.Port, cc.TLSConfig = h.Host, h.Port, h.TLSConfig
			cc.Fallbacks, cc.ValidateConnect = nil, nil
		})}})
	}
	return newCluster(ctx, specs, true, opts)
}

// hostsOf lists the hosts of a connection config once each, in order, with the first TLS
// setting pgconn would try for each (sslmode prefer and allow list every host twice).
func hostsOf(cc *pgx.ConnConfig) []*pgconn.FallbackConfig {
	seen := map[string]bool{}
	var out []*pgconn.FallbackConfig
	for _, h := range append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...) {
		key := net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port)))
		if !seen[key] {
			seen[key] = true
			out = append(out, h)
		}
	}
	return out
}

// memberSpec is how to build one member's pool.
type memberSpec struct {
	cfg  *config.Config
	opts []Option // after the cluster's WithMemberOptions
}

// newCluster builds a cluster whose first member is taken for the primary until a check says
// otherwise; discover lets the first check make any writable member the primary.
func newCluster(ctx context.Context, specs []memberSpec, discover bool, opts []ClusterOption) (*Cluster, error) {
	o := clusterOptions{maxLag: DefaultMaxReplayLag, every: DefaultLagCheckEvery}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.maxLag < 0:
		return nil, fmt.Errorf("pool: WithMaxReplayLag must be >= 0, got %d", o.maxLag)
	case o.maxDelay < 0:
		return nil, fmt.Errorf("pool: WithMaxReplayDelay must be >= 0, got %s", o.maxDelay)
	case o.every < 10*time.Millisecond:
		return nil, fmt.Errorf("pool: WithLagCheckEvery must be >= 10ms, got %s", o.every)
	case len(specs) > maxMembers:
		return nil, fmt.Errorf("pool: a cluster has at most %d members, got %d", maxMembers, len(specs))
	}
	var lo options
	for _, opt := range o.member {
		opt(&lo)
	}
	c := &Cluster{maxLag: o.maxLag, maxDelay: o.maxDelay, every: o.every, minGap: max(o.every/20, 10*time.Millisecond), log: lo.logger,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), discover: discover}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	c.newMoved()
	for i, sp := range specs {
		p, err := New(ctx, sp.cfg, append(slices.Clip(o.member), sp.opts...)...)
		if err != nil {
			c.Close()
			if i == 0 {
				return nil, err
			}
			return nil, fmt.Errorf("pool: member %d: %w", i, err)
		}
		c.members = append(c.members, newMember(i, p))
		if i == 0 {
			c.primary.Store(c.members[0])
		}
	}
	c.checkAll(ctx)
	c.discover = false // from now on a primary is replaced only when it stops being one
	c.bg.Go(c.watch)
	return c, nil
}

// newMoved replaces the signal that the primary changed with a fresh one.
func (c *Cluster) newMoved() {
	ctx, cancel := context.WithCancel(context.Background())
	c.moved.Store(&ctx)
	c.endMoved = cancel
}

// newMember wraps a member's pool.
func newMember(idx int, p *Pool) *member {
	cc := p.pgx.Config().ConnConfig
	m := &member{idx: idx, pool: p, addr: net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port)))}
	m.lsn.Store(-1)
	m.lag.Store(-1)
	m.newDown()
	return m
}

// Close closes every member's pool (each as [Pool.Close] says, concurrently) after the lag
// checks have stopped. It is idempotent; the cluster's background work has ended when it
// returns.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		close(c.stop)
		c.endLife()
		c.bg.Wait()
		var wg sync.WaitGroup
		for _, m := range c.members {
			wg.Go(m.pool.Close)
		}
		wg.Wait()
		// Only now: calls still running had the pools' close grace, uncanceled.
		for _, m := range c.members {
			m.endDown()
		}
		c.endMoved()
	})
}

// Primary returns the pool of the member that is the primary now. Work done on it directly is
// not tracked for read-your-writes.
func (c *Cluster) Primary() *Pool { return c.primary.Load().pool }

// Exec runs sql on the primary as [Pool.Exec] does, and records its WAL position for
// read-your-writes. When the primary changes while it waits to retry (see [Cluster.Tx]), it
// runs on the new one, provided it did not run on the old.
func (c *Cluster) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := c.write(ctx, notSent, func(ctx context.Context, p *Pool) (err error) {
		tag, err = p.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// Query runs sql on the primary as [Pool.Query] does; it may write (INSERT ... RETURNING), so
// its WAL position is recorded for read-your-writes when the rows are closed. Reads belong on
// [Cluster.Replica].
func (c *Cluster) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	m := c.primary.Load()
	rs, err := m.pool.Query(ctx, sql, args...)
	if err != nil {
		c.wrote(ctx, m, err)
		return nil, err
	}
	return &heldRows{Rows: rs, done: func() { c.wrote(ctx, m, rs.Err()) }}, nil
}

// QueryRow runs sql on the primary as [Pool.QueryRow] does, and records its WAL position for
// read-your-writes after Scan.
func (c *Cluster) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return writeRow{c: c, ctx: ctx, sql: sql, args: args}
}

// SendBatch sends b to the primary as [Pool.SendBatch] does, and records its WAL position for
// read-your-writes when the results are closed.
func (c *Cluster) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	m := c.primary.Load()
	return &heldBatch{BatchResults: m.pool.SendBatch(ctx, b), done: func(err error) { c.wrote(ctx, m, err) }}
}

// CopyFrom copies rows into table on the primary as [Pool.CopyFrom] does, and records its WAL
// position for read-your-writes.
func (c *Cluster) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	m := c.primary.Load()
	n, err := m.pool.CopyFrom(ctx, table, columns, src)
	c.wrote(ctx, m, err)
	return n, err
}

// Tx runs fn in a transaction on the primary as [Pool.Tx] does, and records the WAL position
// after the commit for read-your-writes (unless opts ask for a read-only transaction).
//
// When the cluster finds that the primary has changed (a replica promoted) while Tx runs, Tx's
// context on the former primary is canceled, and unless its COMMIT's outcome is unknown
// (*[AmbiguousCommitError]) fn runs again on the new primary: a write that waited out a
// failover in the former primary's retries goes to the new one at once.
func (c *Cluster) Tx(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	if opts.AccessMode == pgx.ReadOnly {
		return c.primary.Load().pool.Tx(ctx, opts, fn)
	}
	return c.write(ctx, notAmbiguous, func(ctx context.Context, p *Pool) error { return p.Tx(ctx, opts, fn) })
}

// notSent reports whether a statement that failed with err did not run.
func notSent(err error) bool { return retry.Classify(err) == retry.NotSent }

// notAmbiguous reports whether a transaction that failed with err did not commit.
func notAmbiguous(err error) bool {
	var amb *AmbiguousCommitError
	return !errors.As(err, &amb)
}

// errPrimaryMoved is the cause with which a write's context on the former primary is canceled.
var errPrimaryMoved = errors.New("pool: the cluster's primary changed")

// write runs fn on the primary's pool and records the WAL position it leaves for
// read-your-writes. When the primary changes while fn runs, fn's context is canceled, and fn
// runs again on the new primary if unapplied says its error proves nothing was applied.
func (c *Cluster) write(ctx context.Context, unapplied func(error) bool, fn func(context.Context, *Pool) error) error {
	if c.closed.Load() {
		return ErrClosed
	}
	for range maxMembers {
		moved := c.moved.Load()
		m := c.primary.Load()
		wctx, cancel := context.WithCancelCause(ctx)
		stop := context.AfterFunc(*moved, func() { cancel(errPrimaryMoved) })
		err := fn(wctx, m.pool)
		stop()
		cause := context.Cause(wctx)
		cancel(nil)
		if err == nil || ctx.Err() != nil || !errors.Is(cause, errPrimaryMoved) || !unapplied(err) {
			c.wrote(ctx, m, err)
			return err
		}
		c.stats.followed.Add(1)
		c.log.InfoContext(ctx, "pgsteady: cluster: the primary changed during a write that did not apply: running it on the new primary", "err", err)
	}
	return errPrimaryMoved
}

// writeRow is Cluster.QueryRow's row.
type writeRow struct {
	c    *Cluster
	ctx  context.Context
	sql  string
	args []any
}

func (r writeRow) Scan(dest ...any) error {
	return r.c.write(r.ctx, notSent, func(ctx context.Context, p *Pool) error {
		return p.QueryRow(ctx, r.sql, r.args...).Scan(dest...)
	})
}

// heldRows calls done once, when its rows are closed or read to the end.
type heldRows struct {
	pgx.Rows
	done func()
	once sync.Once
}

func (r *heldRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.once.Do(r.done)
	return false
}

func (r *heldRows) Close() {
	r.Rows.Close()
	r.once.Do(r.done)
}

// heldBatch calls done once, when its results are closed.
type heldBatch struct {
	pgx.BatchResults
	done func(error)
	once sync.Once
}

func (b *heldBatch) Close() error {
	err := b.BatchResults.Close()
	b.once.Do(func() { b.done(err) })
	return err
}
