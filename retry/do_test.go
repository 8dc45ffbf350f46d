package retry

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors of each class, as pgx would return them.
var (
	errNotSent   = &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
	errConnLost  = io.ErrUnexpectedEOF
	errConflict  = &pgconn.PgError{Severity: "ERROR", Code: "40001", Message: "could not serialize access"}
	errPermanent = &pgconn.PgError{Severity: "ERROR", Code: "42601", Message: "syntax error"}
)

// maxJitter makes every wait equal to its envelope.
func maxJitter(n int64) int64 { return n - 1 }

// retryLog records the calls of a Policy's OnRetry hook.
type retryLog struct {
	mu    sync.Mutex
	calls []retryCall
}

type retryCall struct {
	attempt int
	err     error
	class   Class
	delay   time.Duration
}

func (l *retryLog) hook(attempt int, err error, class Class, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, retryCall{attempt, err, class, delay})
}

func (l *retryLog) delays() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ds []time.Duration
	for _, c := range l.calls {
		ds = append(ds, c.delay)
	}
	return ds
}

// failing returns a function that fails with errs in turn, then succeeds
// with the value "ok", and a counter of its calls.
func failing(errs ...error) (func(context.Context) (string, error), *int) {
	n := 0
	return func(context.Context) (string, error) {
		n++
		if n <= len(errs) {
			return "", errs[n-1]
		}
		return "ok", nil
	}, &n
}

// always returns a function that always fails with err.
func always(err error) (func(context.Context) (string, error), *int) {
	n := 0
	return func(context.Context) (string, error) {
		n++
		return "", err
	}, &n
}

func ms(n ...int) []time.Duration {
	var ds []time.Duration
	for _, v := range n {
		ds = append(ds, time.Duration(v)*time.Millisecond)
	}
	return ds
}

func TestDoSucceedsFirstTime(t *testing.T) {
	t.Parallel()
	var log retryLog
	p := DefaultPolicy()
	p.OnRetry = log.hook
	calls := 0
	err := Do(context.Background(), p, func(context.Context) error { calls++; return nil })
	if err != nil || calls != 1 || len(log.calls) != 0 {
		t.Fatalf("Do = %v after %d calls and %d retries; want nil after 1 call, 0 retries", err, calls, len(log.calls))
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var log retryLog
		p := DefaultPolicy().WithRetryOn(Transaction)
		p.OnRetry = log.hook
		fn, calls := failing(errNotSent, errConnLost, errConflict)
		start := time.Now()

		v, err := doValue(t.Context(), p, fn, maxJitter)

		if err != nil || v != "ok" {
			t.Fatalf("doValue = %q, %v; want ok, nil", v, err)
		}
		if *calls != 4 {
			t.Errorf("fn called %d times, want 4", *calls)
		}
		want := []retryCall{
			{1, errNotSent, NotSent, 25 * time.Millisecond},
			{2, errConnLost, ConnLost, 50 * time.Millisecond},
			{3, errConflict, Conflict, 100 * time.Millisecond},
		}
		if !slices.Equal(log.calls, want) {
			t.Errorf("OnRetry calls = %v, want %v", log.calls, want)
		}
		if got := time.Since(start); got != 175*time.Millisecond {
			t.Errorf("took %v, want 175ms (the sum of the waits)", got)
		}
	})
}

func TestDoDelaySequence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy Policy
		want   []time.Duration
	}{
		{
			name:   "defaults double from 25ms and cap at 1s",
			policy: Policy{MaxAttempts: 10},
			want:   ms(25, 50, 100, 200, 400, 800, 1000, 1000, 1000),
		},
		{
			name:   "custom growth and cap",
			policy: Policy{Initial: 10 * time.Millisecond, Multiplier: 3, MaxInterval: 200 * time.Millisecond, MaxAttempts: 6},
			want:   ms(10, 30, 90, 200, 200),
		},
		{
			name:   "multiplier 1 keeps a constant envelope",
			policy: Policy{Initial: 40 * time.Millisecond, Multiplier: 1, MaxAttempts: 4},
			want:   ms(40, 40, 40),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var log retryLog
				p := tt.policy
				p.OnRetry = log.hook
				fn, calls := always(errNotSent)
				start := time.Now()

				_, err := doValue(t.Context(), p, fn, maxJitter)

				var rerr *Error
				if !errors.As(err, &rerr) || rerr.Attempts != tt.policy.MaxAttempts {
					t.Fatalf("err = %v, want *Error with %d attempts", err, tt.policy.MaxAttempts)
				}
				if *calls != tt.policy.MaxAttempts {
					t.Errorf("fn called %d times, want %d", *calls, tt.policy.MaxAttempts)
				}
				if got := log.delays(); !slices.Equal(got, tt.want) {
					t.Errorf("delays = %v, want %v", got, tt.want)
				}
				var sum time.Duration
				for _, d := range tt.want {
					sum += d
				}
				if got := time.Since(start); got != sum {
					t.Errorf("took %v, want %v", got, sum)
				}
			})
		})
	}
}

func TestDoJitterBounds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var log retryLog
		p := Policy{MaxAttempts: 300, MaxElapsed: 0, OnRetry: log.hook}
		fn, _ := always(errNotSent)

		_, _ = doValue(t.Context(), p, fn, rand.Int64N)

		delays := log.delays()
		if len(delays) != 299 {
			t.Fatalf("%d waits, want 299", len(delays))
		}
		envelope := DefaultInitial
		belowHalf := 0
		for i, d := range delays {
			if d < 0 || d > envelope {
				t.Errorf("wait %d = %v, outside [0, %v]", i+1, d, envelope)
			}
			if d < envelope/2 {
				belowHalf++
			}
			envelope = min(2*envelope, DefaultMaxInterval)
		}
		// With full jitter about half the waits fall below half their
		// envelope; with backoff's default ±50 % none would. The chance
		// that fewer than 50 of 299 do is far below 1e-30.
		if belowHalf < 50 {
			t.Errorf("%d of %d waits below half their envelope; jitter is not full", belowHalf, len(delays))
		}
	})
}

func TestDoContextCanceledDuringWait(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var log retryLog
		ctx, cancel := context.WithCancel(t.Context())
		p := Policy{Initial: time.Second, OnRetry: log.hook}
		fn, calls := always(errNotSent)
		start := time.Now()
		time.AfterFunc(300*time.Millisecond, cancel)

		_, err := doValue(ctx, p, fn, maxJitter)

		var rerr *Error
		if !errors.As(err, &rerr) || rerr.Attempts != 1 || rerr.Class != NotSent {
			t.Fatalf("err = %#v, want *Error{Attempts: 1, Class: NotSent}", err)
		}
		if !errors.Is(err, errNotSent) {
			t.Errorf("err does not wrap the last attempt's error")
		}
		if *calls != 1 || len(log.calls) != 1 {
			t.Errorf("fn called %d times, OnRetry %d times; want 1 and 1", *calls, len(log.calls))
		}
		if got := time.Since(start); got != 300*time.Millisecond {
			t.Errorf("returned after %v, want 300ms (when ctx was canceled)", got)
		}
	})
}

func TestDoContextDoneDuringAttempt(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var log retryLog
		ctx, cancel := context.WithCancel(t.Context())
		p := Policy{OnRetry: log.hook}
		calls := 0
		fn := func(context.Context) (string, error) {
			calls++
			cancel()
			return "", errNotSent
		}

		_, err := doValue(ctx, p, fn, maxJitter)

		var rerr *Error
		if !errors.As(err, &rerr) || rerr.Attempts != 1 {
			t.Fatalf("err = %v, want *Error after 1 attempt", err)
		}
		if calls != 1 || len(log.calls) != 0 {
			t.Errorf("fn called %d times, OnRetry %d times; want 1 and 0", calls, len(log.calls))
		}
	})
}

func TestDoContextDoneBeforeFirstAttempt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fn, calls := always(errNotSent)
	_, err := DoValue(ctx, DefaultPolicy(), fn)
	if err != context.Canceled || *calls != 0 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 0", err, *calls)
	}
}

func TestDoDeadline(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		timeout     time.Duration
		policy      Policy
		wantCalls   int
		wantElapsed time.Duration
	}{
		{
			name:        "deadline shorter than the first wait",
			timeout:     100 * time.Millisecond,
			policy:      Policy{Initial: 200 * time.Millisecond},
			wantCalls:   1,
			wantElapsed: 0,
		},
		{
			name:    "wait that would end exactly at the deadline is not started",
			timeout: time.Second,
			policy:  Policy{Initial: 100 * time.Millisecond, MaxInterval: 100 * time.Millisecond},
			// attempts at 0, 100, ..., 900 ms; a wait from 900 to 1000 ms
			// would leave the next attempt no time.
			wantCalls:   10,
			wantElapsed: 900 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
				defer cancel()
				fn, calls := always(errNotSent)
				start := time.Now()

				_, err := doValue(ctx, tt.policy, fn, maxJitter)

				var rerr *Error
				if !errors.As(err, &rerr) || rerr.Attempts != tt.wantCalls || rerr.Limit != LimitContext {
					t.Fatalf("err = %v, want *Error{Limit: LimitContext} after %d attempts", err, tt.wantCalls)
				}
				if *calls != tt.wantCalls {
					t.Errorf("fn called %d times, want %d", *calls, tt.wantCalls)
				}
				if got := time.Since(start); got != tt.wantElapsed {
					t.Errorf("returned after %v, want %v", got, tt.wantElapsed)
				}
				if ctx.Err() != nil {
					t.Errorf("ctx already done (%v): Do should have stopped before the deadline", ctx.Err())
				}
			})
		})
	}
}

func TestDoMaxAttempts(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 5} {
		synctest.Test(t, func(t *testing.T) {
			var log retryLog
			p := Policy{MaxAttempts: n, OnRetry: log.hook}
			fn, calls := always(errNotSent)

			_, err := doValue(t.Context(), p, fn, maxJitter)

			var rerr *Error
			if !errors.As(err, &rerr) || rerr.Attempts != n || rerr.Class != NotSent || rerr.Limit != LimitAttempts {
				t.Fatalf("MaxAttempts %d: err = %v, want *Error{Attempts: %d, Class: NotSent, Limit: LimitAttempts}", n, err, n)
			}
			if *calls != n || len(log.calls) != n-1 {
				t.Errorf("MaxAttempts %d: fn called %d times, OnRetry %d times", n, *calls, len(log.calls))
			}
		})
	}
}

func TestDoMaxElapsed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		attemptTime time.Duration
		wantCalls   int
		wantElapsed time.Duration
	}{
		// Attempts at 0, 100, ..., 1000 ms: the last wait ends exactly at
		// MaxElapsed, which is allowed.
		{"instant attempts", 0, 11, time.Second},
		// Attempts run 0-300, 400-700, 800-1100 ms; a wait from 1100 ms
		// would end after MaxElapsed: the time in fn counts.
		{"slow attempts", 300 * time.Millisecond, 3, 1100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := Policy{Initial: 100 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxElapsed: time.Second}
				calls := 0
				fn := func(context.Context) (string, error) {
					calls++
					time.Sleep(tt.attemptTime)
					return "", errNotSent
				}
				start := time.Now()

				_, err := doValue(t.Context(), p, fn, maxJitter)

				var rerr *Error
				if !errors.As(err, &rerr) || rerr.Attempts != tt.wantCalls || rerr.Limit != LimitElapsed {
					t.Fatalf("err = %v, want *Error{Limit: LimitElapsed} after %d attempts", err, tt.wantCalls)
				}
				if calls != tt.wantCalls {
					t.Errorf("fn called %d times, want %d", calls, tt.wantCalls)
				}
				if got := time.Since(start); got != tt.wantElapsed {
					t.Errorf("returned after %v, want %v", got, tt.wantElapsed)
				}
			})
		})
	}
}

func TestDoRetryOn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		retryOn   Classes
		err       error
		wantCalls int // with MaxAttempts 3
	}{
		{"zero RetryOn retries not-sent", 0, errNotSent, 3},
		{"zero RetryOn does not retry conn-lost", 0, errConnLost, 1},
		{"Safe does not retry conn-lost", Safe, errConnLost, 1},
		{"Idempotent retries conn-lost", Idempotent, errConnLost, 3},
		{"Idempotent retries conflict (the transaction was rolled back)", Idempotent, errConflict, 3},
		{"Transaction retries conflict", Transaction, errConflict, 3},
		{"Transaction does not retry permanent", Transaction, errPermanent, 1},
		{"conflict only", Set(Conflict), errNotSent, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				p := Policy{RetryOn: tt.retryOn, MaxAttempts: 3}
				fn, calls := always(tt.err)

				_, err := doValue(t.Context(), p, fn, maxJitter)

				if *calls != tt.wantCalls {
					t.Errorf("fn called %d times, want %d", *calls, tt.wantCalls)
				}
				if tt.wantCalls == 1 {
					// Not retried at all: the error comes back unchanged.
					if err != tt.err {
						t.Errorf("err = %#v, want the function's error unchanged", err)
					}
					return
				}
				var rerr *Error
				if !errors.As(err, &rerr) || rerr.Attempts != 3 || rerr.Class != Classify(tt.err) || !errors.Is(err, tt.err) {
					t.Errorf("err = %v, want *Error{Attempts: 3} wrapping %v", err, tt.err)
				}
			})
		})
	}
}

func TestDoLaterErrorNotRetried(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		fn, calls := failing(errNotSent, errNotSent, errPermanent)

		_, err := doValue(t.Context(), DefaultPolicy(), fn, maxJitter)

		var rerr *Error
		if !errors.As(err, &rerr) || rerr.Attempts != 3 || rerr.Class != Permanent {
			t.Fatalf("err = %v, want *Error{Attempts: 3, Class: Permanent}", err)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42601" {
			t.Errorf("errors.As(err, *pgconn.PgError) = %v, want the 42601 error", pgErr)
		}
		if *calls != 3 {
			t.Errorf("fn called %d times, want 3", *calls)
		}
	})
}

func TestDoErrorWrapsLastError(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := Policy{RetryOn: Idempotent, MaxAttempts: 2}
		fn, _ := failing(errNotSent, errConnLost)

		err := Do(t.Context(), p, func(ctx context.Context) error { _, err := fn(ctx); return err })

		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false", err)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			t.Errorf("err wraps %v; want only the last attempt's error", pgErr)
		}
		var rerr *Error
		if !errors.As(err, &rerr) || rerr.Class != ConnLost || rerr.Attempts != 2 {
			t.Errorf("err = %v, want *Error{Attempts: 2, Class: ConnLost}", err)
		}
	})
}

func TestDoInvalidPolicy(t *testing.T) {
	t.Parallel()
	called := false
	err := Do(t.Context(), Policy{Multiplier: 0.5}, func(context.Context) error { called = true; return nil })
	var perr *PolicyError
	if !errors.As(err, &perr) || perr.Field != "Multiplier" {
		t.Fatalf("err = %v, want *PolicyError for Multiplier", err)
	}
	if called {
		t.Error("fn was called with an invalid policy")
	}
}

func TestDoConcurrentUseOfOnePolicy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var retries atomic.Int64
		p := DefaultPolicy()
		p.MaxAttempts = 4
		p.OnRetry = func(int, error, Class, time.Duration) { retries.Add(1) }
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				fn, _ := failing(errNotSent, errNotSent)
				if v, err := DoValue(t.Context(), p, fn); err != nil || v != "ok" {
					t.Errorf("DoValue = %q, %v", v, err)
				}
			})
		}
		wg.Wait()
		if got := retries.Load(); got != 16 {
			t.Errorf("OnRetry called %d times, want 16", got)
		}
	})
}

func TestContinueTakesOverAfterAFirstAttempt(t *testing.T) {
	p := DefaultPolicy()
	p.Initial = time.Millisecond
	tests := []struct {
		name      string
		first     error
		rest      []error // errors of the attempts Continue makes, then success
		wantCalls int
		wantErr   func(error) bool
	}{
		{"first attempt succeeded", nil, nil, 0, func(err error) bool { return err == nil }},
		{"first attempt permanent", errPermanent, nil, 0, func(err error) bool { return err == errPermanent }},
		{"retried until success", errNotSent, []error{errNotSent}, 2, func(err error) bool { return err == nil }},
		{"later attempt permanent", errNotSent, []error{errPermanent}, 1, func(err error) bool {
			var e *Error
			return errors.As(err, &e) && e.Attempts == 2 && e.Err == errPermanent
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fn, calls := failing(tt.rest...)
			err := Continue(t.Context(), p, time.Now(), tt.first, func(ctx context.Context) error {
				_, err := fn(ctx)
				return err
			})
			if !tt.wantErr(err) {
				t.Errorf("Continue = %v", err)
			}
			if *calls != tt.wantCalls {
				t.Errorf("fn called %d times, want %d", *calls, tt.wantCalls)
			}
		})
	}
}

func TestContinueCountsMaxElapsedFromTheFirstAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.MaxElapsed = time.Second
		calls := 0
		start := time.Now()
		time.Sleep(time.Second) // the first attempt took the whole budget
		err := Continue(t.Context(), p, start, errNotSent, func(context.Context) error {
			calls++
			return errNotSent
		})
		var e *Error
		if !errors.As(err, &e) || e.Attempts != 1 || e.Limit != LimitElapsed {
			t.Fatalf("Continue = %v, want an *Error{Limit: LimitElapsed} after the first attempt alone", err)
		}
		if calls != 0 {
			t.Fatalf("fn called %d times after the budget was spent", calls)
		}
	})
}

func TestStopEndsTheLoopWithItsErrorUnchanged(t *testing.T) {
	p := DefaultPolicy().WithRetryOn(Transaction)
	p.Initial = time.Millisecond
	final := errors.New("the outcome is unknown")
	calls := 0
	err := Do(t.Context(), p, func(context.Context) error {
		calls++
		if calls == 1 {
			return errConnLost
		}
		return Stop(final)
	})
	if err != final {
		t.Fatalf("Do = %v, want the stopped error itself", err)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times, want 2", calls)
	}
	if Stop(nil) != nil {
		t.Fatal("Stop(nil) is not nil")
	}
}

func TestNestedRetriesDoNotMultiply(t *testing.T) {
	p := DefaultPolicy()
	p.Initial, p.MaxAttempts = time.Millisecond, 3
	inner := 0
	outer := 0
	err := Do(t.Context(), p, func(ctx context.Context) error {
		outer++
		return Do(ctx, p, func(context.Context) error {
			inner++
			return errNotSent
		})
	})
	var e *Error
	if !errors.As(err, &e) || e.Attempts != 3 {
		t.Fatalf("Do = %v, want the inner *Error after 3 attempts", err)
	}
	if outer != 1 || inner != 3 {
		t.Fatalf("outer ran %d times and inner %d, want 1 and 3", outer, inner)
	}
}
