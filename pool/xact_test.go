package pool_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/xact"
)

func TestParseXactStatus(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	tests := []struct {
		in   *string
		want xact.Status
	}{
		{str("committed"), xact.Committed},
		{str("aborted"), xact.Aborted},
		{str("in progress"), xact.InProgress},
		{nil, xact.Unknown}, // NULL: the id is older than the commit log kept
		{str("something new"), xact.Unknown},
	}
	for _, tt := range tests {
		if got := xact.ParseStatus(tt.in); got != tt.want {
			t.Errorf("parseXactStatus(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestCommitUncertain(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"tx already closed", pgx.ErrTxClosed, false},
		{"commit turned into rollback", fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback), false},
		{"deferred constraint violated at commit", &pgconn.PgError{Severity: "ERROR", Code: "23505"}, false},
		{"serialization failure at commit", &pgconn.PgError{Severity: "ERROR", Code: "40001"}, false},
		{"backend terminated, maybe after committing", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"connection lost", io.ErrUnexpectedEOF, true},
		{"caller's deadline", context.DeadlineExceeded, true},
		{"unknown", errors.New("boom"), true},
	}
	for _, tt := range tests {
		if got := xact.Uncertain(tt.err); got != tt.want {
			t.Errorf("%s: commitUncertain(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
