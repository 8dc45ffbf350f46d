package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// result is one row of the table: one client under one fault.
type result struct {
	fault, client string

	readsOK, readErrs int
	writesOK          int
	writeErrs         int // errors other than ambiguous ones
	ambiguous         int // *pool.AmbiguousCommitError
	ambiguousPresent  int // ... whose row exists
	failedPresent     int // writeErrs whose row exists: silent ambiguity
	lost              int // acknowledged, absent
	duplicated        int // writes stored more than once

	p50, p99, max time.Duration

	// For pgsteady: lost COMMITs it resolved (resolves false when it did not, or for others).
	resolves                           bool
	resolvedCommitted, resolvedAborted int64

	// For the failover fault (failover true); see tally.
	failover                             bool
	firstWrite                           time.Duration
	readsAfterMove, staleReads, readOnly int

	errors []errorKind // most frequent first
	stats  string
	notes  []string
}

// summarize turns a tally and the stored write counts into a result.
func summarize(fault, client string, t *tally, counts map[string]int) result {
	r := result{fault: fault, client: client, readsOK: t.readsOK, readErrs: t.readErrs}
	r.check(t.writes, counts)
	lat := slices.Clone(t.latencies)
	slices.Sort(lat)
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		r.max = lat[len(lat)-1]
	}
	r.errors = sortedKinds(t.errs)
	if t.clock != nil {
		r.failover = true
		r.firstWrite, r.readsAfterMove, r.staleReads, r.readOnly = t.firstWrite, t.readsAfterMove, t.staleReads, t.readOnly
	}
	return r
}

// check compares what the callers of the writes were told with what was stored (counts:
// key -> rows). Keys in counts that are not in writes are ignored.
func (r *result) check(writes []writeOutcome, counts map[string]int) {
	for _, w := range writes {
		n := counts[w.key]
		if n > 1 {
			r.duplicated++
		}
		switch w.state {
		case writeAcked:
			r.writesOK++
			if n == 0 {
				r.lost++
			}
		case writeAmbiguous:
			r.ambiguous++
			if n > 0 {
				r.ambiguousPresent++
			}
		case writeFailed:
			r.writeErrs++
			if n > 0 {
				r.failedPresent++
			}
		}
	}
}

// percentile returns the p-th percentile (nearest rank) of sorted, or 0 when it is empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999999) // ceil, without float noise
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// formatDuration prints d in milliseconds below a second and in seconds above.
func formatDuration(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// sortedKinds returns the error kinds, most frequent first.
func sortedKinds(ek errorKinds) []errorKind {
	kinds := make([]errorKind, 0, len(ek))
	for _, key := range slices.Sorted(maps.Keys(ek)) {
		kinds = append(kinds, *ek[key])
	}
	slices.SortStableFunc(kinds, func(a, b errorKind) int { return cmp.Compare(b.count, a.count) })
	return kinds
}

// renderTable writes results as a Markdown table.
func renderTable(w io.Writer, results []result) {
	fmt.Fprintln(w, "| fault | client | reads ok | read errors | writes ok | write errors | ambiguous (present) | lost COMMITs resolved: committed / aborted | failed but present | lost | duplicated | p50 | p99 | max |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range results {
		amb := "0"
		if r.ambiguous > 0 {
			amb = fmt.Sprintf("%d (%d)", r.ambiguous, r.ambiguousPresent)
		}
		resolved := "–"
		if r.resolves {
			resolved = fmt.Sprintf("%d / %d", r.resolvedCommitted, r.resolvedAborted)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d | %d | %d | %s | %s | %d | %d | %d | %s | %s | %s |\n",
			r.fault, r.client, r.readsOK, r.readErrs, r.writesOK, r.writeErrs, amb, resolved,
			r.failedPresent, r.lost, r.duplicated,
			formatDuration(r.p50), formatDuration(r.p99), formatDuration(r.max))
	}
}

// renderFailover writes the failover fault's own measures as a Markdown table, or nothing
// when the run had no failover.
func renderFailover(w io.Writer, results []result) {
	header := false
	for _, r := range results {
		if !r.failover {
			continue
		}
		if !header {
			fmt.Fprintf(w, "\n%s:\n\n", r.fault)
			fmt.Fprintln(w, "| client | first write acknowledged after the promotion | read errors | write errors (of them 25006 from the old primary) | ambiguous | lost | duplicated | reads after the switch answered by the old primary |")
			fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|")
			header = true
		}
		first := "none"
		if r.firstWrite > 0 {
			first = formatDuration(r.firstWrite)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %d (%d) | %d | %d | %d | %d of %d |\n",
			r.client, first, r.readErrs, r.writeErrs, r.readOnly, r.ambiguous, r.lost, r.duplicated, r.staleReads, r.readsAfterMove)
	}
}

// reportHeader is what the report says about the run as a whole.
type reportHeader struct {
	CPUs     int
	Postgres string
	Versions string // Go and pgx
	Duration time.Duration
	Work     workload
	Elapsed  time.Duration
	Resolve  bool // pgsteady resolves lost COMMITs
}

// maxErrorKinds bounds the error texts shown per client and fault.
const maxErrorKinds = 3

// writeReport writes the whole report: a preamble, the table, and per fault the notes, the
// clients' statistics and examples of the errors their callers saw.
func writeReport(w io.Writer, h reportHeader, results []result) {
	fmt.Fprintf(w, "faultbench: pgsteady vs pgxpool vs database/sql, each with its defaults, on %d CPUs, "+
		"PostgreSQL %s with TLS on 127.0.0.1, PgBouncer 1.18, %s; %d readers + %d writers per client, "+
		"%v per fault, %v pause after each request, %v deadline per request, unless a fault's notes below say otherwise. Run took %v.\n",
		h.CPUs, h.Postgres, h.Versions, h.Work.readers, h.Work.writers, h.Duration, h.Work.pause, h.Work.timeout,
		h.Elapsed.Round(time.Second))
	if h.Resolve {
		fmt.Fprintln(w, "pgsteady resolves lost COMMITs (its default).")
	} else {
		fmt.Fprintln(w, "pgsteady resolves no lost COMMIT (pool.WithoutCommitResolution).")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Reads: pgsteady p.Idempotent().QueryRow (the documented way to mark a read safe to repeat), "+
		"pgxpool QueryRow, database/sql QueryRowContext. Writes: one INSERT with a unique key into a table "+
		"without a unique constraint; pgsteady p.Tx, pgxpool Exec, database/sql ExecContext. "+
		"Latencies are of every request, failed ones included.")
	fmt.Fprintln(w)
	renderTable(w, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "\"ambiguous (present)\": errors reported as *pool.AmbiguousCommitError (of which stored). "+
		"\"lost COMMITs resolved\": COMMITs whose answer pgsteady lost and then settled by asking the server "+
		"(pg_xact_status): committed ones were acknowledged, aborted ones ran again. "+
		"\"failed but present\": the caller got an ordinary error, yet the row was stored, an ambiguity "+
		"nobody was told about. \"lost\": acknowledged, not stored. \"duplicated\": writes stored more than once.")
	renderFailover(w, results)
	renderDetails(w, results)
}

// renderDetails writes, per fault, its notes and, per client, its statistics and errors.
func renderDetails(w io.Writer, results []result) {
	fault := ""
	for _, r := range results {
		if r.fault != fault {
			fault = r.fault
			fmt.Fprintf(w, "\n%s:\n", fault)
			for _, n := range r.notes {
				fmt.Fprintf(w, "- %s\n", n)
			}
		}
		fmt.Fprintf(w, "- %s: %s\n", r.client, r.stats)
		for i, k := range r.errors {
			if i == maxErrorKinds {
				rest := 0
				for _, k := range r.errors[i:] {
					rest += k.count
				}
				fmt.Fprintf(w, "  - %d more errors of %d other kinds\n", rest, len(r.errors)-i)
				break
			}
			fmt.Fprintf(w, "  - %d× %s: `%s`\n", k.count, k.op, strings.ReplaceAll(shorten(k.example, 240), "`", "'"))
		}
	}
}

// shorten cuts s to at most n bytes, on a rune boundary, marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// missedBar lists where pgsteady missed its bar: a read error, or a write lost, duplicated
// or failed but present, or, when it resolves lost COMMITs, left ambiguous.
func missedBar(results []result) []string {
	var out []string
	for _, r := range results {
		if r.client != kindPgsteady.String() {
			continue
		}
		// With resolution on, a lost COMMIT left ambiguous is a miss too (issue 11).
		amb := 0
		if r.resolves {
			amb = r.ambiguous
		}
		if r.readErrs+r.lost+r.duplicated+r.failedPresent+amb > 0 {
			out = append(out, fmt.Sprintf("%s: %d read errors, %d lost, %d duplicated, %d failed but present, %d ambiguous writes",
				r.fault, r.readErrs, r.lost, r.duplicated, r.failedPresent, amb))
		}
	}
	return out
}
