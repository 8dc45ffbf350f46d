package retry

import (
	"errors"
	"math"
	"testing"
	"time"
)

func TestDefaultPolicy(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	if p.Initial != 25*time.Millisecond || p.MaxInterval != time.Second || p.Multiplier != 2 ||
		p.MaxElapsed != 15*time.Second || p.MaxAttempts != 0 || p.RetryOn != Safe || p.OnRetry != nil {
		t.Errorf("DefaultPolicy() = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("DefaultPolicy().Validate() = %v", err)
	}
}

func TestWithRetryOn(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	q := p.WithRetryOn(Transaction)
	if q.RetryOn != Transaction || p.RetryOn != Safe {
		t.Errorf("WithRetryOn: got %v, original now %v", q.RetryOn, p.RetryOn)
	}
	q.RetryOn = Safe
	if !samePolicy(q, p) {
		t.Errorf("WithRetryOn changed other fields: %+v", q)
	}
}

// samePolicy compares policies field by field, OnRetry by whether it is set.
func samePolicy(a, b Policy) bool {
	return a.Initial == b.Initial && a.MaxInterval == b.MaxInterval && a.Multiplier == b.Multiplier &&
		a.MaxElapsed == b.MaxElapsed && a.MaxAttempts == b.MaxAttempts && a.RetryOn == b.RetryOn &&
		(a.OnRetry == nil) == (b.OnRetry == nil)
}

func TestPolicyZeroValuesTakeDefaults(t *testing.T) {
	t.Parallel()
	got := Policy{}.withDefaults()
	want := Policy{Initial: DefaultInitial, MaxInterval: DefaultMaxInterval, Multiplier: DefaultMultiplier, RetryOn: Safe}
	if !samePolicy(got, want) {
		t.Errorf("Policy{}.withDefaults() = %+v, want %+v (MaxElapsed and MaxAttempts 0 mean no limit)", got, want)
	}
	if err := (Policy{}).Validate(); err != nil {
		t.Errorf("Policy{}.Validate() = %v", err)
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy Policy
		want   *PolicyError // nil: valid
		text   string
	}{
		{"defaults", DefaultPolicy(), nil, ""},
		{"zero", Policy{}, nil, ""},
		{"no limits", Policy{MaxElapsed: 0, MaxAttempts: 0}, nil, ""},
		{"multiplier 1", Policy{Multiplier: 1}, nil, ""},
		{"initial equals max interval", Policy{Initial: time.Second, MaxInterval: time.Second}, nil, ""},
		{"one attempt", Policy{MaxAttempts: 1}, nil, ""},
		{"Transaction", Policy{RetryOn: Transaction}, nil, ""},
		{
			"negative initial", Policy{Initial: -time.Millisecond},
			&PolicyError{Field: "Initial", Value: "-1ms", Limit: ">= 0"},
			"retry: Initial must be >= 0, got -1ms",
		},
		{
			"negative max interval", Policy{MaxInterval: -time.Second},
			&PolicyError{Field: "MaxInterval", Value: "-1s", Limit: ">= 0"}, "",
		},
		{
			"multiplier below 1", Policy{Multiplier: 0.5},
			&PolicyError{Field: "Multiplier", Value: "0.5", Limit: "a finite number >= 1"},
			"retry: Multiplier must be a finite number >= 1, got 0.5",
		},
		{
			"negative multiplier", Policy{Multiplier: -2},
			&PolicyError{Field: "Multiplier", Value: "-2", Limit: "a finite number >= 1"}, "",
		},
		{
			"NaN multiplier", Policy{Multiplier: math.NaN()},
			&PolicyError{Field: "Multiplier", Value: "NaN", Limit: "a finite number >= 1"}, "",
		},
		{
			"infinite multiplier", Policy{Multiplier: math.Inf(1)},
			&PolicyError{Field: "Multiplier", Value: "+Inf", Limit: "a finite number >= 1"}, "",
		},
		{
			"negative max elapsed", Policy{MaxElapsed: -time.Second},
			&PolicyError{Field: "MaxElapsed", Value: "-1s", Limit: ">= 0"}, "",
		},
		{
			"negative max attempts", Policy{MaxAttempts: -3},
			&PolicyError{Field: "MaxAttempts", Value: "-3", Limit: ">= 0"},
			"retry: MaxAttempts must be >= 0, got -3",
		},
		{
			"retry permanent", Policy{RetryOn: Set(NotSent, Permanent)},
			&PolicyError{Field: "RetryOn", Value: "permanent|not-sent", Limit: "a subset of not-sent|conn-lost|conflict"}, "",
		},
		{
			"undefined class bits", Policy{RetryOn: Classes(0x40)},
			&PolicyError{Field: "RetryOn", Value: "0x40", Limit: "a subset of not-sent|conn-lost|conflict"}, "",
		},
		{
			"max interval below initial", Policy{Initial: 2 * time.Second, MaxInterval: time.Second},
			&PolicyError{Field: "MaxInterval", Value: "1s", Limit: ">= Initial (2s)"},
			"retry: MaxInterval must be >= Initial (2s), got 1s",
		},
		{
			"default max interval below initial", Policy{Initial: 2 * time.Second},
			&PolicyError{Field: "MaxInterval", Value: "0 (default 1s)", Limit: ">= Initial (2s)"}, "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var perr *PolicyError
			if !errors.As(err, &perr) {
				t.Fatalf("Validate() = %v, want *PolicyError", err)
			}
			if *perr != *tt.want {
				t.Errorf("Validate() = %+v, want %+v", *perr, *tt.want)
			}
			if tt.text != "" && err.Error() != tt.text {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.text)
			}
		})
	}
}
