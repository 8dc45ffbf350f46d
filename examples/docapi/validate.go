package main

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// fieldType is how a form value is read and stored.
type fieldType int

const (
	textField fieldType = iota // text
	dateField                  // date, written YYYY-MM-DD
	intField                   // integer
	listField                  // text[], written comma-separated
)

// field is one field of a document kind, with its validation rules.
type field struct {
	name      string
	typ       fieldType
	required  bool
	max       int                 // text: most characters; list: most items; int: largest value
	min       int                 // int: smallest value
	check     func(string) string // text, list items: "" if valid, else what is wrong
	oneOf     []string            // text: the allowed values
	past      bool                // date: not after today
	notBefore string              // date: not before this other date field
}

const (
	dateLayout = "2006-01-02"
	// maxFieldBytes bounds any one form value (read limit in upload.go).
	maxFieldBytes = 1 << 10
)

var (
	minDate = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxDate = time.Date(2100, 12, 31, 0, 0, 0, 0, time.UTC)
)

// validationError lists every problem found in an upload's fields.
type validationError struct{ problems []string }

func (e *validationError) Error() string { return strings.Join(e.problems, "; ") }

// validate checks an upload's form values against k's fields and returns them typed, by field
// name: string, time.Time (a UTC midnight), int32 or []string, and nil for an optional field
// left out or empty. today bounds the dates that must be in the past. Unknown keys are errors,
// so that a misspelt field is not silently dropped. The error is a *validationError.
func validate(k *kind, form map[string]string, today time.Time) (map[string]any, error) {
	var problems []string
	bad := func(name, what string) { problems = append(problems, name+": "+what) }

	vals := make(map[string]any, len(k.fields))
	for _, f := range k.fields {
		raw := strings.TrimSpace(form[f.name])
		vals[f.name] = nil
		if raw == "" {
			if f.required {
				bad(f.name, "required")
			}
			continue
		}
		v, problem := f.parse(raw, today)
		if problem != "" {
			bad(f.name, problem)
			continue
		}
		vals[f.name] = v
	}
	for _, f := range k.fields {
		if f.notBefore == "" {
			continue
		}
		a, okA := vals[f.name].(time.Time)
		b, okB := vals[f.notBefore].(time.Time)
		if okA && okB && a.Before(b) {
			bad(f.name, "must not be before "+f.notBefore)
		}
	}

	var unknown []string
	for name := range form {
		if !slices.ContainsFunc(k.fields, func(f field) bool { return f.name == name }) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	for _, name := range unknown {
		bad(name, "unknown field")
	}

	if len(problems) > 0 {
		return nil, &validationError{problems}
	}
	return vals, nil
}

// parse reads one non-empty, trimmed value.
func (f field) parse(raw string, today time.Time) (any, string) {
	if !utf8.ValidString(raw) || strings.ContainsFunc(raw, unicode.IsControl) {
		return nil, "must be printable UTF-8 text"
	}
	switch f.typ {
	case dateField:
		t, err := time.Parse(dateLayout, raw)
		if err != nil {
			return nil, "must be a date written YYYY-MM-DD"
		}
		if t.Before(minDate) || t.After(maxDate) {
			return nil, "must be between 1900-01-01 and 2100-12-31"
		}
		if f.past && t.After(today) {
			return nil, "must not be in the future"
		}
		return t, ""

	case intField:
		n, err := strconv.Atoi(raw)
		if err != nil || n < f.min || n > f.max {
			return nil, "must be a whole number from " + strconv.Itoa(f.min) + " to " + strconv.Itoa(f.max)
		}
		return int32(n), ""

	case listField:
		var items []string
		for item := range strings.SplitSeq(raw, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			if p := f.check(item); p != "" {
				return nil, strconv.Quote(item) + ": " + p
			}
			if slices.Contains(items, item) {
				return nil, strconv.Quote(item) + " appears twice"
			}
			items = append(items, item)
		}
		if len(items) == 0 {
			return nil, "must list at least one item, comma-separated"
		}
		if len(items) > f.max {
			return nil, "must list at most " + strconv.Itoa(f.max) + " items"
		}
		return items, ""
	}

	if n := utf8.RuneCountInString(raw); n > f.max && f.max > 0 {
		return nil, "must be at most " + strconv.Itoa(f.max) + " characters"
	}
	if f.oneOf != nil && !slices.Contains(f.oneOf, raw) {
		return nil, "must be one of " + strings.Join(f.oneOf, ", ")
	}
	if f.check != nil {
		if p := f.check(raw); p != "" {
			return nil, p
		}
	}
	return raw, ""
}

// documentNumber accepts a card number: ASCII letters and digits, with '-' or '/' between them.
func documentNumber(s string) string {
	for i, r := range s {
		alnum := r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))
		sep := (r == '-' || r == '/') && i > 0 && i < len(s)-1
		if !alnum && !sep {
			return "must be ASCII letters and digits, optionally separated by - or /"
		}
	}
	return ""
}

// latinName accepts a name in Latin script: letters (accented too), spaces, hyphens,
// apostrophes and dots.
func latinName(s string) string {
	return scriptName(s, unicode.Latin, "must be a name in Latin script")
}

// arabicName accepts a name in Arabic script: letters, harakat, spaces and hyphens.
func arabicName(s string) string {
	return scriptName(s, unicode.Arabic, "must be a name in Arabic script")
}

func scriptName(s string, script *unicode.RangeTable, problem string) string {
	letters := 0
	for _, r := range s {
		switch {
		case unicode.Is(script, r) && unicode.IsLetter(r):
			letters++
		case unicode.IsMark(r) && letters > 0: // accents, harakat (script Inherited)
		case r == ' ' || r == '-' || r == '\'' || r == '.' || r == '’':
		default:
			return problem
		}
	}
	if letters == 0 {
		return problem
	}
	return ""
}

// licenceCategory accepts a driving licence category: an upper-case letter, then up to two
// upper-case letters or digits (A1, B, EB, C1E).
func licenceCategory(s string) string {
	ok := len(s) <= 3 && 'A' <= s[0] && s[0] <= 'Z'
	for _, r := range s[1:] {
		ok = ok && ('A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}
	if !ok {
		return "must be a licence category such as A1, B or EB"
	}
	return ""
}

// plateNumber accepts a registration number: digits, letters of any script (Moroccan plates
// carry an Arabic letter), spaces, '-' and '|'; at least one digit.
func plateNumber(s string) string {
	digits := 0
	for _, r := range s {
		switch {
		case '0' <= r && r <= '9':
			digits++
		case unicode.IsLetter(r) || r == ' ' || r == '-' || r == '|':
		default:
			return "must be digits and letters, optionally separated by spaces, - or |"
		}
	}
	if digits == 0 {
		return "must contain digits"
	}
	return ""
}

// vin accepts a vehicle identification number: 17 characters, digits and upper-case letters
// other than I, O and Q.
func vin(s string) string {
	if len(s) != 17 || strings.ContainsFunc(s, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z') || r == 'I' || r == 'O' || r == 'Q'
	}) {
		return "must be a 17-character VIN (digits and letters other than I, O, Q)"
	}
	return ""
}
