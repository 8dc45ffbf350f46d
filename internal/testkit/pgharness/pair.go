package pgharness

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pair is a primary and a streaming-replication standby of it, for failover tests: two
// containers of the same image, with the same passwords and TLS certificate, ports on
// 127.0.0.1 only. The standby is a pg_basebackup of the primary streaming its WAL (asynchronous
// replication) over the Docker bridge between the two containers.
//
// The fields name each server by the role it starts in; they do not change. After
// [Pair.Promote] the Standby field is the writable primary. A Pair is good for one failover:
// start another for the next test.
type Pair struct {
	// Primary starts as the primary.
	Primary *Server
	// Standby starts as a hot standby of Primary (read-only, pg_is_in_recovery() true) and is
	// the one [Pair.Promote] promotes.
	Standby *Server

	resolver *Resolver
	extra    []*Server // standbys added by AddStandby
}

// OldPrimary says what happens to the old primary in [Pair.Failover].
type OldPrimary int

const (
	// OldPrimaryReadOnly keeps the old primary running with default_transaction_read_only on
	// (set with ALTER SYSTEM and a reload, so open sessions are affected too): writes to it fail
	// with SQLSTATE 25006 (read_only_sql_transaction), as on a demoted cloud primary, while
	// pg_is_in_recovery() stays false on it.
	OldPrimaryReadOnly OldPrimary = iota
	// OldPrimaryStopped shuts the old primary down (fast: its sessions get 57P01); new connects to
	// it fail.
	OldPrimaryStopped
)

// StartPair starts a primary and a standby streaming from it, waits until the standby streams,
// and points [StableName] at the primary. The caller must call [Pair.Close].
func StartPair(ctx context.Context, opts Options) (p *Pair, err error) {
	p = &Pair{resolver: NewResolver()}
	defer func() {
		if err != nil {
			p.Close()
			p = nil
		}
	}()
	// Both containers start together; the standby's fresh database is replaced below.
	creds, err := newCredentials()
	if err != nil {
		return p, err
	}
	var wg sync.WaitGroup
	var errP, errS error
	wg.Go(func() { p.Primary, errP = start(ctx, opts, creds) })
	wg.Go(func() { p.Standby, errS = start(ctx, opts, creds) })
	wg.Wait()
	if err = errors.Join(errP, errS); err != nil {
		return p, err
	}
	if err = p.Primary.exec(ctx, shellEnv+`echo 'hostssl replication all all scram-sha-256' >>"$data/pg_hba.conf" && "$bin/pg_ctl" reload -D "$data" >/dev/null`); err != nil {
		return p, err
	}
	if err = follow(ctx, p.Standby, p.Primary); err != nil {
		return p, err
	}
	if err = p.waitStreaming(ctx, 1); err != nil {
		return p, err
	}
	p.resolver.Set(StableName, p.Primary.Addr())
	return p, nil
}

// follow replaces s's database with a base backup of upstream, streaming from it.
func follow(ctx context.Context, s, upstream *Server) error {
	ip, err := upstream.ctr.ContainerIP(ctx)
	if err != nil {
		return fmt.Errorf("pgharness: upstream's address on the Docker network: %w", err)
	}
	// The container's own database is replaced by a base backup of the primary; the
	// superuser's password is in the container's environment (the same as the primary's).
	err = s.exec(ctx, shellEnv+`touch "$run/down" && "$bin/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null && rm -rf "$data" &&
		PGPASSWORD="$PGSTEADY_SUPERUSER_PASSWORD" PGSSLMODE=require "$bin/pg_basebackup" -h `+ip+` -p 5432 -U postgres -D "$data" -R -X stream -c fast &&
		rm -f "$run/down"`)
	if err != nil {
		return err
	}
	if err = s.waitAccepting(ctx); err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// AddStandby starts one more hot standby streaming from the primary (for tests of several
// read replicas), waits until it streams and returns it. [Pair.Close] removes it; failovers
// leave it alone (it keeps following the old primary).
func (p *Pair) AddStandby(ctx context.Context, opts Options) (*Server, error) {
	s, err := start(ctx, opts, p.Primary)
	if err != nil {
		return nil, err
	}
	p.extra = append(p.extra, s)
	if err := follow(ctx, s, p.Primary); err != nil {
		return nil, err
	}
	if err := p.waitStreaming(ctx, 1+len(p.extra)); err != nil {
		return nil, err
	}
	return s, nil
}

// waitStreaming waits until the primary reports n standbys streaming from it.
func (p *Pair) waitStreaming(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var streaming int
		err := p.Primary.adminRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", &streaming)
		if err == nil && streaming >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgharness: standby not streaming (last error: %v): %w", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close removes every container of the pair, the standbys AddStandby added too. It is idempotent.
func (p *Pair) Close() error {
	var errs []error
	for _, s := range append([]*Server{p.Primary, p.Standby}, p.extra...) {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	return errors.Join(errs...)
}

// Resolver is the pair's DNS: [StableName] points at the primary until [Pair.MoveName]. Put its
// LookupFunc in the pgx config (ConnConfig.LookupFunc) of connections made with
// [Pair.StableDSN].
func (p *Pair) Resolver() *Resolver { return p.resolver }

// StableDSN connects the app user to [StableName] with sslmode=require. It only works through
// the pair's [Resolver].
func (p *Pair) StableDSN() string {
	return dsn(appUser, p.Primary.appPassword, StableName+":5432", appDatabase, url.Values{"sslmode": {"require"}})
}

// Promote promotes the standby (pg_promote) and waits until it has left recovery and accepts
// writes. It leaves the old primary and [StableName] alone: see [Pair.Failover].
func (p *Pair) Promote(ctx context.Context) error {
	var ok bool
	if err := p.Standby.adminRow(ctx, "SELECT pg_promote(true, 60)", &ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("pgharness: pg_promote did not finish within 60 s")
	}
	inRecovery, err := p.Standby.InRecovery(ctx)
	if err != nil {
		return err
	}
	if inRecovery {
		return errors.New("pgharness: standby still in recovery after pg_promote")
	}
	return nil
}

// Rejoin makes the old primary, after [Pair.Promote], a hot standby of the promoted one, as
// a failover tool does with a demoted primary: its database is replaced by a base backup of
// the new primary (what Patroni's reinitialise does where pg_rewind cannot be used), and it
// streams from it on the new timeline. It keeps its address; its sessions end (57P01) while
// it is replaced. Standbys added by [Pair.AddStandby] are left following it.
func (p *Pair) Rejoin(ctx context.Context) error {
	return follow(ctx, p.Primary, p.Standby)
}

// MoveName points [StableName] at the standby (the new primary).
func (p *Pair) MoveName() { p.resolver.Set(StableName, p.Standby.Addr()) }

// Failover does what a managed database's failover does, in its order: it fences the old
// primary as old says (kept read-only, it first lets the standby catch up with it), promotes
// the standby, and moves [StableName] to it. Connections already open to the old primary stay
// open when it is kept read-only.
func (p *Pair) Failover(ctx context.Context, old OldPrimary) error {
	switch old {
	case OldPrimaryReadOnly:
		if err := p.Primary.SetReadOnly(ctx, true); err != nil {
			return err
		}
		if err := p.CatchUp(ctx); err != nil {
			return err
		}
	case OldPrimaryStopped:
		if err := p.Primary.StopServer(ctx); err != nil {
			return err
		}
	default:
		return fmt.Errorf("pgharness: unknown OldPrimary %d", old)
	}
	if err := p.Promote(ctx); err != nil {
		return err
	}
	p.MoveName()
	return nil
}

// MultiHostDSN connects the app user to servers in the order given (pgx tries them in turn), with
// sslmode=require and, unless targetSessionAttrs is "", that target_session_attrs (any,
// read-write, read-only, primary, standby, prefer-standby).
func MultiHostDSN(targetSessionAttrs string, servers ...*Server) string {
	hosts := make([]string, len(servers))
	for i, s := range servers {
		hosts[i] = s.Addr()
	}
	q := url.Values{"sslmode": {"require"}}
	if targetSessionAttrs != "" {
		q.Set("target_session_attrs", targetSessionAttrs)
	}
	return dsn(appUser, servers[0].appPassword, strings.Join(hosts, ","), appDatabase, q)
}

// SetReadOnly turns default_transaction_read_only on or off server-wide (ALTER SYSTEM and a
// reload): open sessions that did not set it themselves follow from their next transaction, and
// writes fail with SQLSTATE 25006. It persists across restarts until turned off.
func (s *Server) SetReadOnly(ctx context.Context, on bool) error {
	stmt := "ALTER SYSTEM RESET default_transaction_read_only"
	if on {
		stmt = "ALTER SYSTEM SET default_transaction_read_only = on"
	}
	return s.admin(ctx, "SET default_transaction_read_only = off", stmt, "SELECT pg_reload_conf()")
}

// InRecovery reports pg_is_in_recovery(): true on a standby.
func (s *Server) InRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := s.adminRow(ctx, "SELECT pg_is_in_recovery()", &r)
	return r, err
}

// adminRow runs a one-row query as the superuser and scans it into dst.
func (s *Server) adminRow(ctx context.Context, sql string, dst ...any) error {
	conn, err := pgx.Connect(ctx, s.AdminDSN())
	if err != nil {
		return fmt.Errorf("pgharness: admin connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		return fmt.Errorf("pgharness: %s: %w", sql, err)
	}
	return nil
}

// CatchUp waits until the standby has replayed all of the (now read-only) old primary's WAL,
// twice in a row 50 ms apart, so that the failover loses no commit of the old primary (as
// a planned failover, or synchronous replication, ensures). Without it, commits of the last
// few hundred milliseconds before the promotion may be missing on the new primary, whatever
// the client did: asynchronous replication's loss, not the client's.
func (pair *Pair) CatchUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	old, err := pgx.Connect(ctx, pair.Primary.AdminDSN())
	if err != nil {
		return err
	}
	defer old.Close(context.Background())
	standby, err := pgx.Connect(ctx, pair.Standby.AdminDSN())
	if err != nil {
		return err
	}
	defer standby.Close(context.Background())
	for streak := 0; streak < 2; {
		var lsn string
		if err := old.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
			return err
		}
		var replayed bool
		if err := standby.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", lsn).Scan(&replayed); err != nil {
			return err
		}
		if replayed {
			streak++
		} else {
			streak = 0
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgharness: standby not caught up with the old primary: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
