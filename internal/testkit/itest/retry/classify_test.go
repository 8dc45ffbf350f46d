package retry_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pgsteady/pgsteady/retry"
)

// pgsteadyErr stands for the error types of pgsteady's pool, which wrap
// database errors without hiding them: it is declared in a package of the
// pgsteady module (this test package).
type pgsteadyErr struct{ err error }

func (e *pgsteadyErr) Error() string { return "pool: " + e.err.Error() }

func (e *pgsteadyErr) Unwrap() error { return e.err }

// checkClass checks the class of err, and that it survives wrapping with
// fmt.Errorf, errors.Join with an unrelated error, and *retry.Error.
func checkClass(t *testing.T, err error, want retry.Class) {
	t.Helper()
	forms := []struct {
		name string
		err  error
	}{
		{"bare", err},
		{"fmt.Errorf %w", fmt.Errorf("query documents: %w", err)},
		{"twice wrapped", fmt.Errorf("handler: %w", fmt.Errorf("store: %w", err))},
		{"errors.Join with itself", errors.Join(err, err)},
		{"*retry.Error", &retry.Error{Attempts: 3, Class: want, Err: err}},
		{"a wrapper declared in pgsteady", &pgsteadyErr{err}},
	}
	for _, f := range forms {
		if got := retry.Classify(f.err); got != want {
			t.Errorf("%s: Classify(%v) = %v, want %v", f.name, f.err, got, want)
		}
	}
	// A part that says nothing about the database makes a join Permanent.
	joined := errors.Join(errors.New("licence number already taken"), err)
	if got := retry.Classify(joined); got != retry.Permanent {
		t.Errorf("joined with a business error: Classify(%v) = %v, want permanent", joined, got)
	}
}
