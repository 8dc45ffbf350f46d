package pgfake_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/pgfake"
)

func connect(t *testing.T, s *pgfake.Server, dsn string) (*pgx.Conn, error) {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cc.DialFunc = s.Dial
	c, err := pgx.ConnectConfig(t.Context(), cc)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// What pgx sees of each scripted reply, through each protocol.
func TestPgxSeesEachReplyAsAServerWouldSendIt(t *testing.T) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := pgfake.New(func(q pgfake.Query) pgfake.Reply {
					switch q.SQL {
					case "rows":
						return pgfake.Rows([]string{"n", "s", "b", "null"}, []any{int64(7), "", true, nil})
					case "fail":
						return pgfake.Fail("40001", "could not serialize access")
					case "fatal":
						return pgfake.Fatal("57P01", "terminating connection due to administrator command")
					case "drop":
						return pgfake.Drop()
					case "hang":
						return pgfake.Hang()
					}
					return pgfake.Reply{}
				})
				defer s.Close()
				c, err := connect(t, s, pgfake.DSN)
				if err != nil {
					t.Fatal(err)
				}
				var n int64
				var str *string
				var b bool
				var null *string
				if err := c.QueryRow(t.Context(), "rows", mode).Scan(&n, &str, &b, &null); err != nil || n != 7 || str == nil || *str != "" || !b || null != nil {
					t.Fatalf("rows: %v, %v, %v, %v, %v", n, str, b, null, err)
				}
				if _, err := c.Exec(t.Context(), "fail", mode); sqlState(err) != "40001" {
					t.Fatalf("fail: %v", err)
				}
				if _, err := c.Exec(t.Context(), "BEGIN", mode); err != nil || c.PgConn().TxStatus() != 'T' {
					t.Fatalf("the session after an ERROR: %v, status %c", err, c.PgConn().TxStatus())
				}
				if _, err := c.Exec(t.Context(), "fail", mode); err == nil || c.PgConn().TxStatus() != 'E' {
					t.Fatalf("an ERROR in a transaction leaves status %c", c.PgConn().TxStatus())
				}
				if _, err := c.Exec(t.Context(), "ROLLBACK", mode); err != nil || c.PgConn().TxStatus() != 'I' {
					t.Fatalf("ROLLBACK: %v, status %c", err, c.PgConn().TxStatus())
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				if err := c.Ping(ctx); err != nil {
					t.Fatalf("ping: %v", err)
				}
				if _, err := c.Exec(ctx, "hang", mode); !errors.Is(err, context.DeadlineExceeded) || !c.IsClosed() {
					t.Fatalf("hang: %v, want the caller's deadline", err)
				}
				for _, tt := range []struct {
					sql  string
					want func(error) bool
				}{
					{"fatal", func(err error) bool { return sqlState(err) == "57P01" }},
					// As over TCP, pgconn says "unexpected EOF" or "conn closed" (over a pipe,
					// the latter): either way, not safe to retry.
					{"drop", func(err error) bool { return err != nil && !pgconn.SafeToRetry(err) }},
				} {
					c, err := connect(t, s, pgfake.DSN)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.Exec(t.Context(), tt.sql, mode); !tt.want(err) {
						t.Fatalf("%s: %v", tt.sql, err)
					}
					if _, err := c.Exec(t.Context(), "SELECT 1", mode); err == nil {
						t.Fatalf("%s: the connection still works", tt.sql)
					}
				}
				if got := len(s.Seen(func(q pgfake.Query) bool { return q.SQL == "fail" })); got != 2 {
					t.Fatalf("Seen: %d, want 2", got)
				}
			})
		})
	}
}

func TestTheServerCanRefuseBeDownAndKill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := pgfake.New(nil)
		defer s.Close()
		s.Down(true)
		if _, err := connect(t, s, pgfake.DSN); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("down: %v", err)
		}
		s.Down(false)
		s.Refuse(&pgfake.Error{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"})
		if _, err := connect(t, s, pgfake.DSN); sqlState(err) != "57P03" {
			t.Fatalf("refused: %v", err)
		}
		s.Refuse(nil)
		s.SetParam("in_hot_standby", "")
		s.SetParam("server_version", "13.9")
		c, err := connect(t, s, pgfake.DSN)
		if err != nil {
			t.Fatal(err)
		}
		if pc := c.PgConn(); pc.ParameterStatus("in_hot_standby") != "" || pc.ParameterStatus("server_version") != "13.9" {
			t.Fatalf("parameters: %q, %q", pc.ParameterStatus("in_hot_standby"), pc.ParameterStatus("server_version"))
		}
		if s.Accepted() != 2 || s.Open() != 1 { // the refused one was accepted, then closed
			t.Fatalf("Accepted %d, Open %d; want 2, 1", s.Accepted(), s.Open())
		}
		s.Kill(2)
		if err := c.Ping(t.Context()); err == nil {
			t.Fatal("a killed connection answered")
		}
	})
}

func TestANamedStatementsDescriptionIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := pgfake.New(nil)
		defer s.Close()
		c, err := connect(t, s, "postgres://app@127.0.0.1/app?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(t.Context(), "SELECT $1::text", "x"); sqlState(err) != "0A000" {
			t.Fatalf("a cached statement: %v, want 0A000 saying to use default_query_exec_mode=exec", err)
		}
	})
}
