package retry

import "testing"

func TestClassString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		class Class
		want  string
	}{
		{Permanent, "permanent"},
		{NotSent, "not-sent"},
		{ConnLost, "conn-lost"},
		{Conflict, "conflict"},
		{Class(9), "retry.Class(9)"},
		{Class(-1), "retry.Class(-1)"},
	}
	for _, tt := range tests {
		if got := tt.class.String(); got != tt.want {
			t.Errorf("Class(%d).String() = %q, want %q", int(tt.class), got, tt.want)
		}
	}
}

func TestZeroClassIsPermanent(t *testing.T) {
	t.Parallel()
	var c Class
	if c != Permanent {
		t.Fatalf("zero Class = %v, want permanent", c)
	}
}

func TestClasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		set  Classes
		has  []Class
		str  string
	}{
		{"empty", Set(), nil, "none"},
		{"Safe: the work provably did not take effect", Safe, []Class{NotSent, Conflict}, "not-sent|conflict"},
		{"Idempotent", Idempotent, []Class{NotSent, ConnLost, Conflict}, "not-sent|conn-lost|conflict"},
		{"Transaction", Transaction, []Class{NotSent, ConnLost, Conflict}, "not-sent|conn-lost|conflict"},
		{"Set matches the constants", Set(Conflict, NotSent, ConnLost), []Class{NotSent, ConnLost, Conflict}, "not-sent|conn-lost|conflict"},
		{"duplicates", Set(ConnLost, ConnLost), []Class{ConnLost}, "conn-lost"},
		{"permanent", Set(Permanent), []Class{Permanent}, "permanent"},
		{"undefined classes ignored", Set(Class(-1), Class(4), Class(200)), nil, "none"},
		{"stray bits", Classes(0x32), []Class{NotSent}, "not-sent|0x30"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for c := Class(-1); c <= numClasses+1; c++ {
				want := false
				for _, h := range tt.has {
					want = want || h == c
				}
				if got := tt.set.Has(c); got != want {
					t.Errorf("%v.Has(%v) = %v, want %v", tt.set, c, got, want)
				}
			}
			if got := tt.set.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
		})
	}
	if Transaction != Set(NotSent, ConnLost, Conflict) || Idempotent != Set(NotSent, ConnLost, Conflict) || Safe != Set(NotSent, Conflict) {
		t.Error("the named sets differ from Set of their classes")
	}
}

// Each named set must contain the ones it extends: whatever is safe to retry
// for any statement is safe for idempotent work and for a whole transaction.
func TestSetsNest(t *testing.T) {
	t.Parallel()
	if Safe&^Idempotent != 0 || Idempotent&^Transaction != 0 {
		t.Errorf("Safe %v, Idempotent %v, Transaction %v do not nest", Safe, Idempotent, Transaction)
	}
	for _, s := range []Classes{Safe, Idempotent, Transaction} {
		if s.Has(Permanent) {
			t.Errorf("%v retries permanent errors", s)
		}
	}
}
