package retry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsteady/pgsteady/retry"
)

func ExampleClassify() {
	errs := []error{
		&pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"},
		fmt.Errorf("list licences: %w", io.ErrUnexpectedEOF),
		&pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"},
		errors.New("psycopg2.OperationalError: SSL connection has been closed unexpectedly"), // text alone: not from a database connection
		&pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"},
		&pgconn.PgError{Severity: "ERROR", Code: "23505", Message: "duplicate key value"},
		&pgconn.PgError{Severity: "FATAL", Code: "XX000", Message: "Couldn't connect to compute node"},
		context.DeadlineExceeded,
		nil,
	}
	for _, err := range errs {
		fmt.Println(retry.Classify(err))
	}
	// Output:
	// not-sent
	// conn-lost
	// conn-lost
	// permanent
	// conflict
	// permanent
	// not-sent
	// permanent
	// permanent
}

func ExampleDo() {
	// A server that is starting up refuses sessions with 57P03 before any
	// statement is sent: any statement may be retried.
	starting := &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
	calls := 0
	insert := func(ctx context.Context) error {
		calls++
		if calls < 3 {
			return starting
		}
		return nil // INSERT INTO vehicle_registrations ...
	}

	p := retry.DefaultPolicy() // RetryOn: retry.Safe
	p.OnRetry = func(attempt int, err error, class retry.Class, delay time.Duration) {
		fmt.Printf("attempt %d failed (%v), retrying\n", attempt, class)
	}
	err := retry.Do(context.Background(), p, insert)
	fmt.Println("err:", err, "after", calls, "calls")
	// Output:
	// attempt 1 failed (not-sent), retrying
	// attempt 2 failed (not-sent), retrying
	// err: <nil> after 3 calls
}

func ExampleDoValue() {
	// A read is idempotent: it may be retried even after the connection
	// died with the query in flight.
	calls := 0
	count := func(ctx context.Context) (int, error) {
		calls++
		if calls == 1 {
			return 0, io.ErrUnexpectedEOF // the server closed the connection
		}
		return 42, nil // SELECT count(*) FROM identity_cards
	}
	n, err := retry.DoValue(context.Background(), retry.DefaultPolicy().WithRetryOn(retry.Idempotent), count)
	fmt.Println(n, err)
	// Output: 42 <nil>
}

func ExampleDo_notRetried() {
	// The default policy retries only errors raised before the statement
	// was sent. A lost connection may have let a write run: Do returns the
	// error as it is, after one call.
	calls := 0
	err := retry.Do(context.Background(), retry.DefaultPolicy(), func(ctx context.Context) error {
		calls++
		return io.ErrUnexpectedEOF
	})
	fmt.Println(err == io.ErrUnexpectedEOF, calls)
	// Output: true 1
}

func ExampleError() {
	p := retry.DefaultPolicy().WithRetryOn(retry.Idempotent)
	p.MaxAttempts = 3
	err := retry.Do(context.Background(), p, func(ctx context.Context) error {
		return fmt.Errorf("read licence: %w", io.ErrUnexpectedEOF)
	})

	var rerr *retry.Error
	if errors.As(err, &rerr) {
		fmt.Println("attempts:", rerr.Attempts, "class:", rerr.Class)
	}
	fmt.Println("still an EOF:", errors.Is(err, io.ErrUnexpectedEOF))
	fmt.Println(err)
	// Output:
	// attempts: 3 class: conn-lost
	// still an EOF: true
	// retry: gave up after 3 attempts (conn-lost; MaxAttempts 3 ran out): read licence: unexpected EOF
}

func ExamplePolicy_WithRetryOn() {
	// A whole transaction may be retried after a serialization failure:
	// PostgreSQL rolled it back, and runs it again from BEGIN.
	calls := 0
	transfer := func(ctx context.Context) error {
		calls++
		// BEGIN ISOLATION LEVEL SERIALIZABLE; ...; COMMIT
		if calls == 1 {
			return &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"}
		}
		return nil
	}
	err := retry.Do(context.Background(), retry.DefaultPolicy().WithRetryOn(retry.Transaction), transfer)
	fmt.Println(err, calls)
	// Output: <nil> 2
}

func ExamplePolicy_Validate() {
	p := retry.DefaultPolicy()
	p.Multiplier = 0.5
	fmt.Println(p.Validate())

	var perr *retry.PolicyError
	if errors.As(p.Validate(), &perr) {
		fmt.Println(perr.Field)
	}
	// Output:
	// retry: Multiplier must be a finite number >= 1, got 0.5
	// Multiplier
}

func ExampleDefaultPolicy() {
	p := retry.DefaultPolicy()
	fmt.Println(p.Initial, p.Multiplier, p.MaxInterval, p.MaxElapsed, p.MaxAttempts, p.RetryOn)
	// Output: 25ms 2 1s 15s 0 not-sent|conflict
}

func ExampleSet() {
	s := retry.Set(retry.NotSent, retry.Conflict)
	fmt.Println(s, s.Has(retry.ConnLost))
	fmt.Println(retry.Transaction)
	// Output:
	// not-sent|conflict false
	// not-sent|conn-lost|conflict
}
