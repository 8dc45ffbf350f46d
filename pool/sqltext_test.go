package pool

import (
	"testing"

	"github.com/pgsteady/pgsteady/retry"
)

func TestMayCommitInside(t *testing.T) {
	for _, tt := range []struct {
		sql  string
		want bool
	}{
		{"SELECT 1", false},
		{"SELECT 1;", false},
		{"  SELECT 1 ;  -- done\n", false},
		{"INSERT INTO t VALUES ($1) ON CONFLICT DO NOTHING", false},
		{"UPDATE t SET v = 'a;b' WHERE k = $1", false},
		{`SELECT "a;b" FROM t`, false},
		{"SELECT $$;$$, $x$ ; $x$", false},
		{"SELECT 1 /* ; /* nested ; */ ; */", false},
		{"SELECT E'\\';' ", false},
		{"SELECT 'it''s;'", false},
		{"CALL p($1)", true},
		{"call p()", true},
		{"/* batch */ CALL p()", true},
		{"-- job\nDO $$ BEGIN COMMIT; END $$", true},
		{"COMMIT", true},
		{"BEGIN; INSERT INTO t VALUES (1); COMMIT", true},
		{"INSERT INTO t VALUES (1); COMMIT; SELECT 2", true},
		{"SELECT 1; SELECT 2", true},
		{"SELECT 'a\\'; SELECT 2", true}, // standard strings: the backslash is a character
		{"SELECT $1; SELECT 2", true},
		{"SELECT 'unterminated; SELECT 2", false},
	} {
		if got := mayCommitInside(tt.sql); got != tt.want {
			t.Errorf("mayCommitInside(%q) = %v, want %v", tt.sql, got, tt.want)
		}
	}
}

func TestWholeCallDropsConflictOnlyWhereACommitMayHaveHappened(t *testing.T) {
	if got := wholeCall(retry.Safe, "SELECT 1"); got != retry.Safe {
		t.Errorf("one statement: %v, want %v", got, retry.Safe)
	}
	got := wholeCall(retry.Idempotent, "CALL job()")
	if got.Has(retry.Conflict) || !got.Has(retry.NotSent) || !got.Has(retry.ConnLost) {
		t.Errorf("CALL: %v, want Idempotent without Conflict", got)
	}
}
