package pgfake

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"
)

// Reply is a scripted answer to one statement. Build one with [Rows], [Tag], [Fail],
// [Fatal], [Drop] or [Hang]; the zero Reply lets [Default] answer.
type Reply struct {
	kind replyKind
	cols []string
	rows [][]any
	tag  string
	err  *Error
}

type replyKind int

const (
	replyDefault replyKind = iota
	replyRows              // rows (possibly none) and a command tag
	replyError             // an ERROR: the statement fails, the session lives
	replyFatal             // a FATAL error, then the server closes the connection
	replyDrop              // the connection closes with the statement in flight, no answer
	replyHang              // a black hole: everything is read and nothing is ever answered
)

// Error is an error the server sends, as PostgreSQL's ErrorResponse.
type Error struct {
	Severity string // ERROR or FATAL
	Code     string // SQLSTATE
	Message  string
}

// Rows answers with columns cols and rows of Go values (string, int, int64, int32, bool,
// float64, or nil for NULL), typed by the first non-nil value of each column (text when all
// are nil), and the tag "SELECT n".
func Rows(cols []string, rows ...[]any) Reply {
	return Reply{kind: replyRows, cols: cols, rows: rows, tag: fmt.Sprintf("SELECT %d", len(rows))}
}

// Tag answers a statement that returns no rows with its command tag ("INSERT 0 1", "UPDATE 3").
func Tag(tag string) Reply { return Reply{kind: replyRows, tag: tag} }

// Fail answers with an ERROR of SQLSTATE code: the statement fails, and the session goes on
// (a transaction it was in is aborted).
func Fail(code, message string) Reply {
	return Reply{kind: replyError, err: &Error{Severity: "ERROR", Code: code, Message: message}}
}

// Fatal answers with a FATAL error of SQLSTATE code and closes the connection, as an
// administrator's pg_terminate_backend (57P01) or a shutdown does.
func Fatal(code, message string) Reply {
	return Reply{kind: replyFatal, err: &Error{Severity: "FATAL", Code: code, Message: message}}
}

// Drop closes the connection without answering: the statement may or may not have run, as
// far as the client can tell (a crash, a flow reset while the statement was in flight).
func Drop() Reply { return Reply{kind: replyDrop} }

// Hang never answers: the server goes on reading and discarding what the client sends, and
// keeps the connection open (a flow black-holed by a NAT, a server frozen) until the client
// or [Server.Close] closes it.
func Hang() Reply { return Reply{kind: replyHang} }

// Default is the server's answer when the handler gives none: a ping (pgx's "-- ping", an
// empty statement) gets an empty answer; BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK,
// ABORT, SET and RESET get their tags; anything else fails with SQLSTATE XX000 saying no
// answer was scripted.
func Default(q Query) Reply {
	sql := strings.TrimSpace(q.SQL)
	if sql == "" || sql == ";" || strings.HasPrefix(sql, "--") && !strings.Contains(sql, "\n") {
		return Reply{kind: replyRows}
	}
	switch verb(sql) {
	case "BEGIN", "START":
		return Tag("BEGIN")
	case "COMMIT", "END":
		return Tag("COMMIT")
	case "ROLLBACK", "ABORT":
		return Tag("ROLLBACK")
	case "SET", "RESET":
		return Tag(verb(sql))
	}
	return Fail("XX000", errNoScript.Error()+": "+sql)
}

// verb is the statement's first word, in upper case.
func verb(sql string) string {
	f := strings.Fields(sql)
	if len(f) == 0 {
		return ""
	}
	return strings.ToUpper(strings.TrimRight(f[0], ";"))
}

// oids are the types of the Go values Rows accepts.
func oidOf(v any) uint32 {
	switch v.(type) {
	case int, int64:
		return pgtype.Int8OID
	case int32:
		return pgtype.Int4OID
	case bool:
		return pgtype.BoolOID
	case float64:
		return pgtype.Float8OID
	}
	return pgtype.TextOID
}

// columnOIDs types each column by its first non-nil value.
func (r Reply) columnOIDs() []uint32 {
	oids := make([]uint32, len(r.cols))
	for i := range r.cols {
		oids[i] = pgtype.TextOID
		for _, row := range r.rows {
			if i < len(row) && row[i] != nil {
				oids[i] = oidOf(row[i])
				break
			}
		}
	}
	return oids
}
