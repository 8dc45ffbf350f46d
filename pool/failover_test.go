package pool

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/retry"
)

func TestTargetSessionAttrsSayWhatThePoolExpects(t *testing.T) {
	for _, tt := range []struct {
		attrs string
		want  int32
	}{
		{"", expectUnknown},
		{"any", expectUnknown},
		{"read-write", expectPrimary},
		{"primary", expectPrimary},
		{"standby", expectStandby},
		{"prefer-standby", expectStandby},
		{"read-only", expectStandby},
	} {
		dsn := "postgres://u@localhost/d"
		if tt.attrs != "" {
			dsn += "?target_session_attrs=" + tt.attrs
		}
		cc, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := expectFrom(cc.ValidateConnect); got != tt.want {
			t.Errorf("target_session_attrs=%q: expect %d, want %d", tt.attrs, got, tt.want)
		}
	}
}

func TestAJudgedReadOnlyErrorSaysWhetherToComeBack(t *testing.T) {
	server := &pgconn.PgError{Code: "25006", Message: "cannot execute INSERT in a read-only transaction"}
	for _, tt := range []struct {
		v         verdict
		ctxErr    error
		wantClass retry.Class
		wantLater bool
	}{
		{verdictCaller, nil, retry.Permanent, false},
		{verdictFailover, nil, retry.NotSent, true},
		{verdictKnown, nil, retry.NotSent, true},
		{verdictUnknown, nil, retry.NotSent, true},
		{verdictGaveUp, context.Canceled, retry.Permanent, false},
		{verdictGaveUp, context.DeadlineExceeded, retry.Permanent, true},
	} {
		err := error(&readOnlyError{err: server, v: tt.v, ctxErr: tt.ctxErr})
		if got := retry.Classify(err); got != tt.wantClass {
			t.Errorf("verdict %d: class %v, want %v", tt.v, got, tt.wantClass)
		}
		if got := retry.MayRetryLater(err); got != tt.wantLater {
			t.Errorf("verdict %d: MayRetryLater %v, want %v", tt.v, got, tt.wantLater)
		}
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe != server || err.Error() != server.Error() {
			t.Errorf("verdict %d: the server's error is not what the caller sees", tt.v)
		}
	}
}

func TestOnlyServerLevelSourcesMakeAFailover(t *testing.T) {
	for _, src := range []string{"user", "database", "database user", "client", "session"} {
		if !sessionSources[src] {
			t.Errorf("source %q is a session's, not the server's", src)
		}
	}
	for _, src := range []string{"configuration file", "command line", "global", "environment variable", "override", "default"} {
		if sessionSources[src] {
			t.Errorf("source %q is the server's", src)
		}
	}
}

func TestDecideReplacesConnectionsCondemnedByAFailoverHoweverRecentlyUsed(t *testing.T) {
	cfg := config.Config{PrePing: config.PrePingIdle, PrePingAfter: time.Second}
	now := time.Now().UnixNano()
	if got := decide(&cfg, 0, now, 0, true, 0); got != checkReplace {
		t.Fatalf("a condemned connection used just now: %v, want replace", got)
	}
	if got := decide(&cfg, 0, now, 0, false, 0); got != checkNone {
		t.Fatalf("a connection used just now: %v, want none", got)
	}
}

func TestTheHorizonFloorFollowsThePingTimeout(t *testing.T) {
	cfg := config.Config{PingTimeout: 2 * time.Second}
	if got := horizonFloor(&cfg); got != 4*time.Second {
		t.Fatalf("floor %v, want 2*PingTimeout", got)
	}
}

func TestStoppedBudgetsEndEveryWaitAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b budgets
		e1 := b.at(time.Now().Add(time.Hour))
		e2 := b.at(time.Now().Add(2 * time.Hour))
		b.stop()
		for _, e := range []*epoch{e1, e2} {
			select {
			case <-e.done:
			default:
				t.Fatal("a wait on a budget outlived the pool's Close")
			}
		}
		select {
		case <-b.at(time.Now().Add(time.Hour)).done:
		default:
			t.Fatal("a budget handed out after Close has not ended")
		}
	})
}

func TestAnAcquireWhosePrePingsAllFailedIsRetried(t *testing.T) {
	last := &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: "server login has been failing, try again later (server_login_retry)"}
	for _, err := range []error{&prePingsFailedError{}, &prePingsFailedError{last: last}} {
		if got := retry.Classify(err); got != retry.NotSent {
			t.Errorf("Classify(%v) = %v, want not-sent: no statement was sent", err, got)
		}
	}
}
