package testhelp

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pgsteady/pgsteady/retry"
)

// CheckClass checks the class of err, and that it survives wrapping with fmt.Errorf,
// errors.Join with itself and *retry.Error; joined with an error that says nothing about the
// database, it must be Permanent.
func CheckClass(t testing.TB, err error, want retry.Class) {
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
	}
	for _, f := range forms {
		if got := retry.Classify(f.err); got != want {
			t.Errorf("%s: Classify(%v) = %v, want %v", f.name, f.err, got, want)
		}
	}
	joined := errors.Join(errors.New("licence number already taken"), err)
	if got := retry.Classify(joined); got != retry.Permanent {
		t.Errorf("joined with a business error: Classify(%v) = %v, want permanent", joined, got)
	}
}
