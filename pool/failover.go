package pool

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/retry"
)

// This file owns the pool's rule for SQLSTATE 25006 read_only_sql_transaction. The error has
// three sources, and only the first is a failover:
//
//	| source                                                   | what the server says            | the pool                            |
//	|----------------------------------------------------------|---------------------------------|-------------------------------------|
//	| the server is a standby, or read-only for every session  | pg_is_in_recovery(), or          | failover: replace every connection  |
//	| (a demoted or fenced primary)                            | default_transaction_read_only    | opened before now, pace, retry      |
//	|                                                          | from a server-level source      |                                     |
//	| a role or database made read-only (ALTER ROLE/DATABASE   | pg_settings.source user,         | the caller's error: returned at     |
//	| ... SET default_transaction_read_only), a session SET    | database, database user, client, | once, not retried, MayRetryLater    |
//	|                                                          | session                          | false                               |
//	| the caller's own READ ONLY transaction                   | the setting is off               | the same                            |
//
// A 25006 is never acted on by itself: the pool asks the server that refused, on the very
// connection that got the error (it is alive and idle after the refusal), which of the three it
// is. A fresh connection would not do: after the DNS name or the host list moved, it reaches
// another server, which says nothing about the one that refused. On a pool that expects a
// standby (target_session_attrs standby, prefer-standby or read-only, or whose first connection
// found a hot standby), recovery is where the DSN leads, not a failover. A failover confirmed
// once condemns every connection opened before it (busy ones too, when they come back), so the
// other callers whose connections meet the same server retry without asking again: one
// confirmation an incident.

// readOnlyProbeSQL asks the server whether it is a standby, and where a default of read-only
// transactions comes from (” when it is off).
const readOnlyProbeSQL = `SELECT pg_is_in_recovery(),
	coalesce((SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only' AND setting = 'on'), '')`

// sessionSources are the pg_settings sources of a setting made for some sessions only: by a
// role, a database, the client's startup packet or a SET. A read-only default from any other
// source (the configuration file, ALTER SYSTEM, the command line) is the server's.
var sessionSources = map[string]bool{"user": true, "database": true, "database user": true, "client": true, "session": true}

// What a 25006 turned out to be.
type verdict int

const (
	verdictUnknown  verdict = iota // the server could not be asked: retry, react to nothing
	verdictCaller                  // the application's own: a read-only transaction, role or database
	verdictFailover                // the server is not (or no longer) a primary
	verdictKnown                   // the connection predates a confirmed failover: retry, no new reaction
	verdictGaveUp                  // the caller's context ended before the server could be asked
)

// Whether the pool expects its connections to reach a primary.
const (
	expectUnknown int32 = iota
	expectPrimary
	expectStandby
)

// expectFrom tells, from the check pgconn makes of each new connection (target_session_attrs
// in the connection string), what the pool's connections should reach; expectUnknown leaves
// it to the first connection.
func expectFrom(validate pgconn.ValidateConnectFunc) int32 {
	if validate == nil {
		return expectUnknown
	}
	switch reflect.ValueOf(validate).Pointer() {
	case reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadWrite).Pointer(),
		reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsPrimary).Pointer():
		return expectPrimary
	case reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsStandby).Pointer(),
		reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsPreferStandby).Pointer(),
		reflect.ValueOf(pgconn.ValidateConnectTargetSessionAttrsReadOnly).Pointer():
		return expectStandby
	}
	return expectUnknown
}

// onStandby reports whether c's server said, when c connected or since, that it is a hot
// standby (the in_hot_standby parameter, reported by PostgreSQL 14 and later).
func onStandby(c *pgconn.PgConn) bool { return c.ParameterStatus("in_hot_standby") == "on" }

// readOnlyError is a 25006 the pool has judged. It is the server's error for errors.As and
// its text, with the class and the advice the verdict gives.
type readOnlyError struct {
	err    error
	v      verdict
	ctxErr error // verdictGaveUp: the caller's context's error
}

func (e *readOnlyError) Error() string { return e.err.Error() }

// Unwrap returns the server's error and, when the caller's context ended before the server
// could be asked why it refused, the context's error.
func (e *readOnlyError) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.err, e.ctxErr}
	}
	return []error{e.err}
}

// RetryClass: the statement was refused, so nothing of it applied; it is worth running again
// only when the server it meets next may accept it.
func (e *readOnlyError) RetryClass() retry.Class {
	if e.v == verdictCaller || e.v == verdictGaveUp {
		return retry.Permanent
	}
	return retry.NotSent
}

// MayRetryLater: a failover passes; an application writing through a read-only transaction,
// role or replica does not; a caller whose context ended before the pool could tell may come
// back if its deadline ran out, not if it canceled, as for any call.
func (e *readOnlyError) MayRetryLater() bool {
	switch e.v {
	case verdictCaller:
		return false
	case verdictGaveUp:
		return errors.Is(e.ctxErr, context.DeadlineExceeded)
	}
	return true
}

// isReadOnly reports whether err is SQLSTATE 25006 read_only_sql_transaction.
func isReadOnly(err error) bool {
	if err == nil {
		return false // before pe: its address escapes, and the success path allocates nothing
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "25006"
}

// judge returns err as it is unless it is a 25006 that c got; then it asks c's server what the
// refusal means (see the table above), reacts to a confirmed failover, and returns the error
// judged. callerReadOnly says the caller asked for a read-only transaction (TxOptions): then
// the refusal is the caller's without asking. c must be idle (not in a transaction).
func (p *Pool) judge(ctx context.Context, c *pgxpool.Conn, err error, callerReadOnly bool) error {
	if !isReadOnly(err) {
		return err
	}
	var ro *readOnlyError
	if errors.As(err, &ro) {
		return err // already judged (a Tx's fn returned the error of a nested call)
	}
	v := verdictCaller
	if !callerReadOnly {
		v = p.verdict(ctx, c, err)
	}
	if v == verdictCaller {
		p.stats.readOnlyErrors.Add(1)
	}
	if v == verdictGaveUp {
		return &readOnlyError{err: err, v: v, ctxErr: ctx.Err()}
	}
	return &readOnlyError{err: err, v: v}
}

// verdict finds out why c's server refused, unless a confirmed failover already covers c. The
// server's own reports answer without a round trip where they can: PostgreSQL 14 and later
// report in_hot_standby and default_transaction_read_only to the client, before the refusal's
// ReadyForQuery, so a session whose default is writable on a server not in recovery was refused
// by its own transaction. A session made read-only by its role or database stays so: its
// verdict is kept with the connection. Otherwise the server is asked (readOnlyProbeSQL).
func (p *Pool) verdict(ctx context.Context, c *pgxpool.Conn, err error) verdict {
	st := p.conns.get(c.Conn())
	switch pc := c.Conn().PgConn(); {
	case st != nil && st.opened <= p.conns.openedBefore.Load():
		return verdictKnown
	case st != nil && st.readOnlySession.Load():
		return verdictCaller
	case pc.ParameterStatus("in_hot_standby") == "off" && pc.ParameterStatus("default_transaction_read_only") == "off":
		return verdictCaller
	}
	pctx, cancel := context.WithTimeout(ctx, p.cfg.PingTimeout)
	defer cancel()
	var inRecovery bool
	var source string
	if qerr := c.QueryRow(pctx, readOnlyProbeSQL, pgx.QueryExecModeSimpleProtocol).Scan(&inRecovery, &source); qerr != nil {
		if ctx.Err() != nil {
			return verdictGaveUp
		}
		p.logs.info(ctx, p.log, "pgsteady: a write was refused as read-only, and the server could not be asked why", "err", qerr)
		return verdictUnknown
	}
	expect := p.expect.Load()
	switch {
	case inRecovery && expect != expectStandby:
		p.failover(ctx, err, "the server is in recovery (pg_is_in_recovery)")
		return verdictFailover
	case source != "" && !sessionSources[source]:
		p.failover(ctx, err, "the server is read-only for every session (default_transaction_read_only from "+source+")")
		return verdictFailover
	case st != nil && roleSources[source]:
		st.readOnlySession.Store(true)
	}
	return verdictCaller
}

// roleSources are the sources of a setting fixed for a session's life: a role's or a
// database's (a SET may still change one from the client or the session).
var roleSources = map[string]bool{"user": true, "database": true, "database user": true}

// failover reacts to a failover the server confirmed (why says how): every connection opened
// before now is replaced before its next use, without a ping, busy ones when they come back,
// so that new ones go through the connection string's host list (and target_session_attrs)
// and a fresh DNS lookup; new connections are paced for a while.
func (p *Pool) failover(ctx context.Context, err error, why string) {
	raise(&p.conns.openedBefore, time.Now().UnixNano())
	p.stats.failovers.Add(1)
	p.outage(ctx, errors.New("failover confirmed: "+why))
	p.logs.warn(ctx, p.log, "pgsteady: failover confirmed: replacing every connection opened before now", "confirmed_by", why, "err", err)
}

// learnExpectation records, from the first connection the pool opens, whether it expects a
// primary (unless the connection string said).
func (p *Pool) learnExpectation(c *pgconn.PgConn) {
	want := expectPrimary
	if onStandby(c) {
		want = expectStandby
	}
	p.expect.CompareAndSwap(expectUnknown, want)
}
