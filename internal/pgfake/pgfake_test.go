package pgfake_test

import (
	"context"
	"errors"
	"fmt"
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

// script answers the statements of TestPgxSeesEachReplyAsAServerWouldSendIt.
func script(q pgfake.Query) pgfake.Reply {
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
}

// step is one statement of TestPgxSeesEachReplyAsAServerWouldSendIt and what pgx must see.
type step struct {
	name       string
	run        func(context.Context, *pgx.Conn, pgx.QueryExecMode) error
	want       func(error) bool
	wantStatus byte // the connection's transaction status after; 0: closed
}

func exec(sql string) func(context.Context, *pgx.Conn, pgx.QueryExecMode) error {
	return func(ctx context.Context, c *pgx.Conn, mode pgx.QueryExecMode) error {
		_, err := c.Exec(ctx, sql, mode)
		return err
	}
}

func isState(code string) func(error) bool {
	return func(err error) bool { return sqlState(err) == code }
}

// scanRows reads the row of "rows" and checks its values.
func scanRows(ctx context.Context, c *pgx.Conn, mode pgx.QueryExecMode) error {
	var n int64
	var str, null *string
	var b bool
	err := c.QueryRow(ctx, "rows", mode).Scan(&n, &str, &b, &null)
	if err == nil && (n != 7 || str == nil || *str != "" || !b || null != nil) {
		err = fmt.Errorf("scanned %v, %v, %v, %v", n, str, b, null)
	}
	return err
}

func ping(ctx context.Context, c *pgx.Conn, _ pgx.QueryExecMode) error { return c.Ping(ctx) }

var steps = []step{
	{"rows, typed by their values; an empty string is not NULL", scanRows, isNil, 'I'},
	{"an ERROR", exec("fail"), isState("40001"), 'I'},
	{"BEGIN after it: the session lives", exec("BEGIN"), isNil, 'T'},
	{"an ERROR in a transaction aborts it", exec("fail"), isState("40001"), 'E'},
	{"ROLLBACK", exec("ROLLBACK"), isNil, 'I'},
	{"a ping", ping, isNil, 'I'},
	{"an unscripted statement", exec("SELECT 1"), isState("XX000"), 'I'},
	{"FATAL: the server ends the session", exec("fatal"), isState("57P01"), 0},
	// As over TCP, pgconn says "unexpected EOF" or "conn closed" (over a pipe, the latter):
	// either way, not safe to retry.
	{"dropped", exec("drop"), func(err error) bool { return err != nil && !pgconn.SafeToRetry(err) }, 0},
	{"a black hole: no answer before the caller's deadline", exec("hang"), func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }, 0},
}

// check runs st on c, opening a new connection first when c is closed, and returns c.
func (st step) check(t *testing.T, s *pgfake.Server, c *pgx.Conn, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	if c == nil || c.IsClosed() {
		var err error
		if c, err = connect(t, s, pgfake.DSN); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := st.run(ctx, c, mode); !st.want(err) {
		t.Fatalf("%s: %v", st.name, err)
	}
	closed := c.IsClosed()
	if got := c.PgConn().TxStatus(); closed != (st.wantStatus == 0) || !closed && got != st.wantStatus {
		t.Fatalf("%s: transaction status %c, closed %v; want %c", st.name, got, closed, st.wantStatus)
	}
	return c
}

// What pgx sees of each scripted reply, through each protocol, in turn on one connection.
func TestPgxSeesEachReplyAsAServerWouldSendIt(t *testing.T) {
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := pgfake.New(script)
				defer s.Close()
				var c *pgx.Conn
				for _, st := range steps {
					c = st.check(t, s, c, mode)
				}
				if got := len(s.Seen(func(q pgfake.Query) bool { return q.SQL == "fail" })); got != 2 {
					t.Fatalf("Seen: %d, want 2", got)
				}
			})
		})
	}
}

func isNil(err error) bool { return err == nil }

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
		synctest.Wait()                         // the refused connection's goroutine ends
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
