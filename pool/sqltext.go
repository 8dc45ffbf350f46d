package pool

import (
	"strings"

	"github.com/pgsteady/pgsteady/retry"
)

// wholeCall returns on without [retry.Conflict] when sql may commit part of its work before a
// conflict ends it: a conflict (40001, 40P01) is retried on the premise that the server rolled
// the whole call back, which holds for one statement run on its own, and not for a procedure
// or DO block that COMMITs (PostgreSQL 11+ transaction control: the part before its last
// COMMIT stays), for transaction control statements, or for several statements in one string
// (the simple protocol runs them in turn; a COMMIT among them ends the implicit transaction).
// The caller then gets the conflict, as pgx would give it. It is called on the error path only.
func wholeCall(on retry.Classes, sql string) retry.Classes {
	if on.Has(retry.Conflict) && mayCommitInside(sql) {
		return on &^ retry.Set(retry.Conflict)
	}
	return on
}

// commitsInside are the first keywords of statements that may commit, or that control the
// transaction the call runs in.
var commitsInside = map[string]bool{
	"call": true, "do": true, "commit": true, "end": true, "begin": true, "start": true,
	"rollback": true, "abort": true, "prepare": true, "savepoint": true, "release": true,
}

// mayCommitInside reports whether sql may commit part of its work: its first keyword is in
// commitsInside, or it holds more than one statement. It reads SQL's lexical structure only
// (comments, quoted strings and identifiers, dollar quotes), and errs towards true.
func mayCommitInside(sql string) bool {
	i := skipSpace(sql, 0)
	j := i
	for j < len(sql) && isIdentByte(sql[j]) {
		j++
	}
	if commitsInside[strings.ToLower(sql[i:j])] {
		return true
	}
	for k := j; k < len(sql); {
		if sql[k] != ';' {
			k = skipToken(sql, k)
			continue
		}
		if skipSpace(sql, k+1) < len(sql) {
			return true // another statement follows
		}
		k++
	}
	return false
}

// skipToken returns the index just past what starts at sql[i]: a quoted string or identifier,
// a dollar-quoted string, a comment, or else one byte.
func skipToken(sql string, i int) int {
	switch c := sql[i]; {
	case c == '\'':
		escapes := i > 0 && (sql[i-1] == 'E' || sql[i-1] == 'e') && (i < 2 || !isIdentByte(sql[i-2]))
		return skipQuoted(sql, i, '\'', escapes)
	case c == '"':
		return skipQuoted(sql, i, '"', false)
	case c == '$' && (i == 0 || !isIdentByte(sql[i-1])):
		return skipDollar(sql, i)
	case c == '-' && strings.HasPrefix(sql[i:], "--"), c == '/' && strings.HasPrefix(sql[i:], "/*"):
		return skipComment(sql, i)
	}
	return i + 1
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// skipSpace returns the index of the first byte at or after i that is neither white space nor
// in a comment.
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\f':
			i++
		case strings.HasPrefix(s[i:], "--"), strings.HasPrefix(s[i:], "/*"):
			i = skipComment(s, i)
		default:
			return i
		}
	}
	return i
}

// skipComment returns the index past the comment that starts at i: -- to the end of the line,
// or /* */, which nest in PostgreSQL.
func skipComment(s string, i int) int {
	if s[i] == '-' {
		if n := strings.IndexByte(s[i:], '\n'); n >= 0 {
			return i + n + 1
		}
		return len(s)
	}
	depth := 0
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(s[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(s)
}

// skipQuoted returns the index past the quoted text that starts at i with q; a doubled q is
// part of it, and with escapes (an E” string) so is a character after a backslash.
func skipQuoted(s string, i int, q byte, escapes bool) int {
	for i++; i < len(s); i++ {
		switch {
		case escapes && s[i] == '\\':
			i++
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			i++
		case s[i] == q:
			return i + 1
		}
	}
	return len(s)
}

// skipDollar returns the index past the dollar-quoted text that starts at i ($tag$ ... $tag$),
// or i+1 when the $ at i starts none (a parameter such as $1).
func skipDollar(s string, i int) int {
	j := i + 1
	if j < len(s) && s[j] >= '0' && s[j] <= '9' {
		return i + 1
	}
	for j < len(s) && isIdentByte(s[j]) {
		j++
	}
	if j >= len(s) || s[j] != '$' {
		return i + 1
	}
	tag := s[i : j+1]
	if n := strings.Index(s[j+1:], tag); n >= 0 {
		return j + 1 + n + len(tag)
	}
	return len(s)
}
