package retry

import "strconv"

// Error is returned by [Do] and [DoValue] when they give up after retrying:
// the policy's MaxAttempts or MaxElapsed was reached, the context ended or
// its deadline would have passed before the next attempt, or a later attempt
// failed with an error the policy does not retry. (When the first attempt
// fails with such an error, Do returns that error itself, unwrapped.)
//
// Err is the error of the last attempt, and Error unwraps to it, so
// errors.Is(err, io.ErrUnexpectedEOF) and errors.As(err, &pgErr) see through
// an *Error. When the context ended, Err is still the last attempt's error;
// check ctx.Err() to learn whether the context was the reason.
type Error struct {
	// Attempts is how many times the function was called, the first call
	// included.
	Attempts int
	// Class is Classify(Err).
	Class Class
	// Err is the error of the last attempt.
	Err error
	// Bound names the limit that ended the retries ("MaxElapsed 15s", "MaxAttempts 5", "the
	// context"), or is empty when the last error was of a class the policy does not retry.
	Bound string
	// Limit is the kind of limit Bound names, for a program to tell them apart.
	Limit Limit
}

// Limit is the kind of limit that ended the retries of an [Error].
type Limit int

const (
	// NoLimit: the last error was of a class the policy does not retry.
	NoLimit Limit = iota
	// LimitAttempts: the policy's MaxAttempts was reached.
	LimitAttempts
	// LimitElapsed: the next attempt would have begun after the policy's MaxElapsed.
	LimitElapsed
	// LimitContext: the context ended, or its deadline would have passed before the next attempt.
	LimitContext
)

// bound is the text of l in [Error.Bound] for policy p.
func (l Limit) bound(p Policy) string {
	switch l {
	case LimitAttempts:
		return "MaxAttempts " + strconv.Itoa(p.MaxAttempts)
	case LimitElapsed:
		return "MaxElapsed " + p.MaxElapsed.String()
	case LimitContext:
		return "the context"
	}
	return ""
}

// Error returns "retry: gave up after N attempts (class): " followed by the
// last error's text.
func (e *Error) Error() string {
	noun := " attempts"
	if e.Attempts == 1 {
		noun = " attempt"
	}
	msg := "retry: gave up after " + strconv.Itoa(e.Attempts) + noun + " (" + e.Class.String()
	if e.Bound != "" {
		msg += "; " + e.Bound + " ran out"
	}
	msg += ")"
	if e.Err == nil {
		return msg
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap returns the last attempt's error.
func (e *Error) Unwrap() error { return e.Err }

// PolicyError is returned by [Policy.Validate], and by [Do] and [DoValue]
// for an invalid policy, without calling the function. It names the field,
// the value given and the limit it broke. The text reads
// "retry: Multiplier must be >= 1, got 0.5".
type PolicyError struct {
	// Field is the name of the Policy field, e.g. "MaxInterval".
	Field string
	// Value is the value given, as text.
	Value string
	// Limit is the rule the value broke, e.g. ">= 0".
	Limit string
}

// Error returns "retry: <Field> must be <Limit>, got <Value>".
func (e *PolicyError) Error() string {
	return "retry: " + e.Field + " must be " + e.Limit + ", got " + e.Value
}
