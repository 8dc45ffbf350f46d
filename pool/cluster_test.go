package pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
)

// testMember is a member as a check that answered leaves it.
func testMember(idx int, recovery bool, lsn int64) *member {
	m := &member{idx: idx, addr: fmt.Sprintf("m%d:5432", idx)}
	m.checked.Store(true)
	m.ok.Store(true)
	m.recovery.Store(recovery)
	m.lsn.Store(lsn)
	m.lag.Store(-1)
	m.newDown()
	return m
}

func testCluster(maxLag int64, ms ...*member) *Cluster {
	c := &Cluster{members: ms, maxLag: maxLag, kick: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler)}
	c.primary.Store(ms[0])
	c.life = context.Background()
	c.newMoved()
	return c
}

func TestSettleMeasuresLagFromThePrimary(t *testing.T) {
	t.Parallel()
	prim, near, far, down := testMember(0, false, 1000), testMember(1, true, 990), testMember(2, true, 100), testMember(3, true, 1000)
	down.ok.Store(false)
	c := testCluster(50, prim, near, far, down)
	c.settle(context.Background())
	for _, tc := range []struct {
		name     string
		m        *member
		wantLag  int64
		readable bool
	}{
		{"primary", prim, -1, false},
		{"within the bound", near, 10, true},
		{"past the bound", far, 900, false},
		{"unreachable", down, -1, false},
	} {
		if got := tc.m.lag.Load(); got != tc.wantLag {
			t.Errorf("%s: lag %d, want %d", tc.name, got, tc.wantLag)
		}
		if got := tc.m != prim && c.readable(tc.m, 0); got != tc.readable {
			t.Errorf("%s: readable %v, want %v", tc.name, got, tc.readable)
		}
	}
}

func TestAReplicaAheadOfTheLastPrimaryCheckHasNoLag(t *testing.T) {
	t.Parallel()
	prim, r := testMember(0, false, 1000), testMember(1, true, 1200) // checked later than the primary
	c := testCluster(0, prim, r)
	c.settle(context.Background())
	if got := r.lag.Load(); got != 0 {
		t.Fatalf("lag %d, want 0", got)
	}
}

func TestSettlePromotesAReplicaOnlyWhenThePrimaryIsNoLongerOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		primary     func(*member)
		wantPromote bool
	}{
		{"healthy primary, second writable server", func(*member) {}, false},
		{"primary failed one check", func(m *member) { m.ok.Store(false); m.fails.Store(1) }, false},
		{"primary failed two checks", func(m *member) { m.ok.Store(false); m.fails.Store(downChecks) }, true},
		{"primary in recovery (demoted)", func(m *member) { m.recovery.Store(true) }, true},
		{"primary read-only for every session", func(m *member) { m.readOnly.Store(true) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prim, promoted, standby := testMember(0, false, 1000), testMember(1, false, 1000), testMember(2, true, 1000)
			tc.primary(prim)
			c := testCluster(DefaultMaxReplayLag, prim, promoted, standby)
			moved := *c.moved.Load()
			c.settle(context.Background())
			want := prim
			if tc.wantPromote {
				want = promoted
			}
			if got := c.primary.Load(); got != want {
				t.Fatalf("primary is %s, want %s", got.addr, want.addr)
			}
			// Writes still running on the former primary are told.
			if got := moved.Err() != nil; got != tc.wantPromote {
				t.Fatalf("writes on the former primary canceled: %v, want %v", got, tc.wantPromote)
			}
		})
	}
}

func TestADemotedPrimaryJoinsTheReaders(t *testing.T) {
	t.Parallel()
	old, promoted := testMember(0, true, 500), testMember(1, false, 500)
	c := testCluster(DefaultMaxReplayLag, old, promoted)
	c.settle(context.Background())
	if c.primary.Load() != promoted {
		t.Fatal("the promoted replica is not the primary")
	}
	if m, onPrimary := c.route(context.Background(), 0); m != old || onPrimary {
		t.Fatalf("read went to %s (primary %v), want the demoted primary", m.addr, onPrimary)
	}
}

func TestReadsGoToTheLeastLoadedQualifyingReplica(t *testing.T) {
	t.Parallel()
	prim, busy, idle, lagging := testMember(0, false, 1000), testMember(1, true, 1000), testMember(2, true, 1000), testMember(3, true, 0)
	c := testCluster(100, prim, busy, idle, lagging)
	c.settle(context.Background())
	busy.inflight.Store(3)
	for range 10 {
		if m, _ := c.route(context.Background(), 0); m != idle {
			t.Fatalf("read went to %s, want %s", m.addr, idle.addr)
		}
	}
	// Equal loads share the reads.
	busy.inflight.Store(0)
	seen := map[*member]int{}
	for range 100 {
		m, _ := c.route(context.Background(), 0)
		seen[m]++
	}
	if seen[busy] == 0 || seen[idle] == 0 || seen[lagging] != 0 || seen[prim] != 0 {
		t.Fatalf("reads by member: busy %d, idle %d, lagging %d, primary %d", seen[busy], seen[idle], seen[lagging], seen[prim])
	}
}

func TestAReadMovesOnFromReplicasItTried(t *testing.T) {
	t.Parallel()
	prim, a, b := testMember(0, false, 1000), testMember(1, true, 1000), testMember(2, true, 1000)
	c := testCluster(100, prim, a, b)
	c.settle(context.Background())
	m, _ := c.route(context.Background(), 1<<a.idx)
	if m != b {
		t.Fatalf("read went to %s, want %s", m.addr, b.addr)
	}
	m, onPrimary := c.route(context.Background(), 1<<a.idx|1<<b.idx)
	if m != prim || !onPrimary {
		t.Fatalf("read went to %s, want the primary", m.addr)
	}
	if got := c.stats.primaryNoReplica.Load(); got != 1 {
		t.Fatalf("primary reads without a replica: %d, want 1", got)
	}
}

func TestReadYourWritesWaitsForReplay(t *testing.T) {
	t.Parallel()
	prim, r := testMember(0, false, 1000), testMember(1, true, 900)
	c := testCluster(DefaultMaxReplayLag, prim, r)
	c.settle(context.Background())
	ryw := WithReadYourWrites(context.Background())
	c.writes.lsn.Store(950)

	if m, _ := c.route(context.Background(), 0); m != r {
		t.Fatal("a read without read-your-writes did not go to the replica within the bound")
	}
	if m, onPrimary := c.route(ryw, 0); m != prim || !onPrimary {
		t.Fatal("a read-your-writes read went to a replica that has not replayed the write")
	}
	select {
	case <-c.kick:
	default:
		t.Fatal("the read did not ask for a check")
	}
	r.lsn.Store(950) // the next check sees the replay
	if m, _ := c.route(ryw, 0); m != r {
		t.Fatal("a read-your-writes read did not go to a replica past the write")
	}
	if got := c.stats.primaryForWrites.Load(); got != 1 {
		t.Fatalf("primary reads for writes: %d, want 1", got)
	}
}

func TestAWriteWhosePositionIsUnknownSendsReadYourWritesToThePrimary(t *testing.T) {
	t.Parallel()
	ryw := WithReadYourWrites(context.Background())
	var w writeMark
	w.lsn.Store(100)
	if lsn, primaryOnly := w.need(context.Background()); lsn != 0 || primaryOnly {
		t.Fatalf("a plain read needs %d (primary only %v)", lsn, primaryOnly)
	}
	if lsn, primaryOnly := w.need(ryw); lsn != 100 || primaryOnly {
		t.Fatalf("need %d (primary only %v), want 100", lsn, primaryOnly)
	}
	// A lookup fails: the write's position is unknown.
	before := w.lost.Load()
	w.lost.Add(1)
	if _, primaryOnly := w.need(ryw); !primaryOnly {
		t.Fatal("a read after a write of unknown position may go to a replica")
	}
	// A lookup that began before the failure does not cover it...
	raise(&w.covered, before)
	if _, primaryOnly := w.need(ryw); !primaryOnly {
		t.Fatal("a position read before the failed write covered it")
	}
	// ...one that began after it does.
	raise(&w.covered, w.lost.Load())
	if _, primaryOnly := w.need(ryw); primaryOnly {
		t.Fatal("a later position did not cover the failed write")
	}
}

func TestOnlyWritesThatMayHaveAppliedAreTracked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, true},
		{"ambiguous commit", &AmbiguousCommitError{Err: io.ErrUnexpectedEOF}, true},
		{"constraint violation", &pgconn.PgError{Code: "23505"}, false},
		{"serialization failure", &pgconn.PgError{Code: "40001"}, false},
	} {
		if got := mayHaveWritten(tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestReplicaFaultsMoveTheReadStatementErrorsDoNot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"recovery conflict", ctx, &pgconn.PgError{Code: "40001"}, true},
		{"shutting down", ctx, &pgconn.PgError{Code: "57P01"}, true},
		{"pool timeout", ctx, &TimeoutError{}, true},
		{"syntax error", ctx, &pgconn.PgError{Code: "42601"}, false},
		{"read-only", ctx, &readOnlyError{err: &pgconn.PgError{Code: "25006"}, v: verdictCaller}, false},
		{"caller gone", canceled, &pgconn.PgError{Code: "57P01"}, false},
	} {
		if got := replicaFault(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewClusterValidatesItsOptions(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("postgres://u@127.0.0.1:1/db")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opt  ClusterOption
	}{
		{"negative lag", WithMaxReplayLag(-1)},
		{"checks too often", WithLagCheckEvery(time.Millisecond)},
		{"negative delay", WithMaxReplayDelay(-time.Second)},
	} {
		if c, err := NewCluster(context.Background(), cfg, nil, tc.opt); err == nil {
			c.Close()
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := NewCluster(context.Background(), nil, nil); err == nil {
		t.Error("nil primary: no error")
	}
}

func TestTheNoRetryQuerierMakesOneAttempt(t *testing.T) {
	t.Parallel()
	cl := call{p: &Pool{}, ctx: context.Background(), on: noRetry, start: time.Now()}
	calls := 0
	err := cl.run(func() error {
		calls++
		if calls == 1 {
			return errors.New("first")
		}
		return nil
	})
	if err == nil || calls != 1 {
		t.Fatalf("err %v after %d attempts", err, calls)
	}
}

func TestFormatLSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		lsn  int64
		want string
	}{{-1, ""}, {0, "0/0"}, {0x16B374D848, "16/B374D848"}} {
		if got := formatLSN(tc.lsn); got != tc.want {
			t.Errorf("formatLSN(%d) = %q, want %q", tc.lsn, got, tc.want)
		}
	}
}

func TestAWriteCaughtInAPromotionRunsOnTheNewPrimary(t *testing.T) {
	t.Parallel()
	old, promoted := testMember(0, false, 1000), testMember(1, true, 1000)
	old.pool, promoted.pool = &Pool{}, &Pool{}
	c := testCluster(DefaultMaxReplayLag, old, promoted)
	refused := &pgconn.PgError{Code: "57P03"} // NotSent: the statement did not run
	var ran []*Pool
	err := c.write(context.Background(), notSent, func(ctx context.Context, p *Pool) error {
		ran = append(ran, p)
		if len(ran) == 1 {
			// The former primary turns read-only and the replica is promoted while the write
			// waits in the former primary's retries.
			old.readOnly.Store(true)
			promoted.recovery.Store(false)
			c.settle(context.Background())
			<-ctx.Done()
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("err = %v, want the second attempt's", err)
	}
	if len(ran) != 2 || ran[0] != old.pool || ran[1] != promoted.pool {
		t.Fatalf("ran on %v, want the former primary then the new one", ran)
	}
	if got := c.stats.followed.Load(); got != 1 {
		t.Fatalf("writes followed: %d, want 1", got)
	}
}

func TestAnAmbiguousTransactionIsNotRunAgainAfterAPromotion(t *testing.T) {
	t.Parallel()
	if notAmbiguous(&AmbiguousCommitError{Err: io.ErrUnexpectedEOF}) {
		t.Fatal("an ambiguous commit counted as not applied")
	}
	if !notAmbiguous(&pgconn.PgError{Code: "25006"}) {
		t.Fatal("a refused transaction counted as applied")
	}
}

func TestNewClusterHostsMakesAMemberOfEachHost(t *testing.T) {
	t.Parallel()
	// Nothing listens on these ports: every pool starts lazily and every check is refused.
	cfg, err := config.Parse("postgres://u:secret@127.0.0.1:1,127.0.0.1:2,127.0.0.1:1/db?sslmode=disable&target_session_attrs=read-write")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClusterHosts(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var addrs []string
	for _, m := range c.Stats().Members {
		addrs = append(addrs, m.Addr)
		if m.Healthy {
			t.Errorf("%s: healthy with nothing listening", m.Addr)
		}
	}
	if want := []string{"127.0.0.1:1", "127.0.0.1:2"}; !slices.Equal(addrs, want) {
		t.Fatalf("members %v, want %v", addrs, want)
	}
}

func TestDiscoveryMakesTheWritableMemberThePrimary(t *testing.T) {
	t.Parallel()
	standby, primary := testMember(0, true, 1000), testMember(1, false, 1000)
	c := testCluster(DefaultMaxReplayLag, standby, primary)
	c.discover = true
	c.settle(context.Background())
	if c.primary.Load() != primary {
		t.Fatal("the writable member is not the primary")
	}
	if got := c.stats.promotions.Load(); got != 0 {
		t.Fatalf("discovery counted as %d promotions", got)
	}
	if m, _ := c.route(context.Background(), 0); m != standby {
		t.Fatal("the standby does not take reads")
	}
}

func TestAReadOnAReplicaThatHungMovesOnWhenItsCheckFails(t *testing.T) {
	t.Parallel()
	prim, hung := testMember(0, false, 1000), testMember(1, true, 1000)
	c := testCluster(DefaultMaxReplayLag, prim, hung)
	c.settle(context.Background())
	var ran []*member
	err := c.read(context.Background(), func(ctx context.Context, _ Querier, a *readAttempt) error {
		m, _ := c.route(context.Background(), 0)
		if len(ran) == 0 {
			m = hung
		}
		ran = append(ran, m)
		if m == hung {
			// The check times out: what check does on a failure.
			end := hung.endDown
			hung.newDown()
			end()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != 2 || ran[0] != hung || ran[1] != prim {
		t.Fatalf("ran on %d members, want the hung replica then the primary", len(ran))
	}
	if hung.inflight.Load() != 0 || prim.inflight.Load() != 0 {
		t.Fatal("reads still counted in flight")
	}
	if got := hung.readFails.Load(); got != 1 {
		t.Fatalf("read failures on the hung replica: %d, want 1", got)
	}
}

func TestTheTimeBoundAppliesOnlyToAReplicaThatIsBehind(t *testing.T) {
	t.Parallel()
	prim, behind, caughtUp := testMember(0, false, 1000), testMember(1, true, 990), testMember(2, true, 1000)
	behind.lagTime.Store(int64(10 * time.Second))
	caughtUp.lagTime.Store(int64(time.Hour)) // an idle primary: the last transaction is old
	c := testCluster(DefaultMaxReplayLag, prim, behind, caughtUp)
	c.maxDelay = 5 * time.Second
	c.settle(context.Background())
	if c.readable(behind, 0) {
		t.Error("a replica behind by more than the time bound takes reads")
	}
	if !c.readable(caughtUp, 0) {
		t.Error("a caught-up replica of an idle primary takes no reads")
	}
}

func TestACheckOfThePrimaryCoversWritesWhosePositionWasLost(t *testing.T) {
	t.Parallel()
	prim, r := testMember(0, false, 5000), testMember(1, true, 5000)
	c := testCluster(DefaultMaxReplayLag, prim, r)
	ryw := WithReadYourWrites(context.Background())
	c.writes.lsn.Store(100)
	c.writes.lost.Add(1) // a write's lookup failed
	if _, primaryOnly := c.writes.need(ryw); !primaryOnly {
		t.Fatal("a read after a lost write may go to a replica")
	}
	c.coverLostWrites(0) // a round that began before the write: covers nothing
	if _, primaryOnly := c.writes.need(ryw); !primaryOnly {
		t.Fatal("a check that began before the lost write covered it")
	}
	c.coverLostWrites(1) // a round that began after it
	lsn, primaryOnly := c.writes.need(ryw)
	if primaryOnly || lsn != 5000 {
		t.Fatalf("need %d (primary only %v), want the primary's position 5000", lsn, primaryOnly)
	}
}
