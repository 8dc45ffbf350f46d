package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 50, 7 * time.Millisecond},
		{"one p99", ms(7), 99, 7 * time.Millisecond},
		{"median of odd", ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{"median of even is the lower", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p100 is the max", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"p0 is the min", ms(1, 2, 3), 0, 1 * time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.0 ms"},
		{1234 * time.Microsecond, "1.2 ms"},
		{45 * time.Millisecond, "45 ms"},
		{999 * time.Millisecond, "999 ms"},
		{time.Second, "1.0 s"},
		{10*time.Second + 3*time.Millisecond, "10.0 s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestCheckWrites(t *testing.T) {
	writes := []writeOutcome{
		{"ok", writeAcked},
		{"ok twice", writeAcked},
		{"lost", writeAcked},
		{"amb present", writeAmbiguous},
		{"amb absent", writeAmbiguous},
		{"failed present", writeFailed},
		{"failed absent", writeFailed},
	}
	counts := map[string]int{"ok": 1, "ok twice": 2, "amb present": 1, "failed present": 1, "fill-w0-0": 3}
	var r result
	r.check(writes, counts)
	want := result{writesOK: 3, lost: 1, duplicated: 1, ambiguous: 2, ambiguousPresent: 1, writeErrs: 2, failedPresent: 1}
	if r.writesOK != want.writesOK || r.lost != want.lost || r.duplicated != want.duplicated ||
		r.ambiguous != want.ambiguous || r.ambiguousPresent != want.ambiguousPresent ||
		r.writeErrs != want.writeErrs || r.failedPresent != want.failedPresent {
		t.Errorf("check = %+v, want %+v", r, want)
	}
}

func TestSummarize(t *testing.T) {
	tl := &tally{readsOK: 3, readErrs: 1, errs: errorKinds{}}
	for _, d := range []time.Duration{40, 10, 30, 20} {
		tl.latencies = append(tl.latencies, d*time.Millisecond)
	}
	r := summarize("f", "c", tl, nil)
	if r.p50 != 20*time.Millisecond || r.p99 != 40*time.Millisecond || r.max != 40*time.Millisecond {
		t.Errorf("p50/p99/max = %v/%v/%v, want 20ms/40ms/40ms", r.p50, r.p99, r.max)
	}
	if tl.latencies[0] != 40*time.Millisecond {
		t.Error("summarize sorted the tally's latencies in place")
	}
}

func TestRenderTable(t *testing.T) {
	results := []result{
		{fault: "none (baseline)", client: "pgsteady", readsOK: 1000, writesOK: 200,
			resolves: true, resolvedCommitted: 3, resolvedAborted: 1,
			p50: 1500 * time.Microsecond, p99: 12 * time.Millisecond, max: 250 * time.Millisecond},
		{fault: "server restarted twice", client: "pgxpool", readsOK: 900, readErrs: 300, writesOK: 100, writeErrs: 50,
			ambiguous: 2, ambiguousPresent: 1, failedPresent: 1, lost: 0, duplicated: 0,
			p50: 4 * time.Millisecond, p99: 2 * time.Second, max: 10 * time.Second},
	}
	var b strings.Builder
	renderTable(&b, results)
	want := `| fault | client | reads ok | read errors | writes ok | write errors | ambiguous (present) | lost COMMITs resolved: committed / aborted | failed but present | lost | duplicated | p50 | p99 | max |
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|
| none (baseline) | pgsteady | 1000 | 0 | 200 | 0 | 0 | 3 / 1 | 0 | 0 | 0 | 1.5 ms | 12 ms | 250 ms |
| server restarted twice | pgxpool | 900 | 300 | 100 | 50 | 2 (1) | – | 1 | 0 | 0 | 4.0 ms | 2.0 s | 10.0 s |
`
	if got := b.String(); got != want {
		t.Errorf("renderTable:\n%s\nwant:\n%s", got, want)
	}
	// Every line is a Markdown table row with the same number of cells.
	for i, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if n := strings.Count(line, "|"); n != 15 {
			t.Errorf("line %d has %d pipes, want 15: %s", i, n, line)
		}
	}
}

func TestMissedBar(t *testing.T) {
	results := []result{
		{fault: "a", client: "pgsteady", writeErrs: 3, ambiguous: 1},
		{fault: "b", client: "pgsteady", readErrs: 1},
		{fault: "c", client: "pgsteady", failedPresent: 1},
		{fault: "d", client: "pgsteady", resolves: true, ambiguous: 1},
		{fault: "b", client: "pgxpool", readErrs: 100, lost: 1},
	}
	got := missedBar(results)
	if len(got) != 3 || !strings.HasPrefix(got[0], "b:") || !strings.HasPrefix(got[1], "c:") || !strings.HasPrefix(got[2], "d:") {
		t.Errorf("missedBar = %q, want the rows of pgsteady under faults b, c and d (ambiguous although it resolves)", got)
	}
}

func TestRenderFailover(t *testing.T) {
	results := []result{
		{fault: "none (baseline)", client: "pgsteady"},
		{fault: "failover", client: "pgsteady", failover: true, firstWrite: 450 * time.Millisecond,
			readsAfterMove: 700, ambiguous: 1},
		{fault: "failover", client: "pgxpool", failover: true, writeErrs: 90, readOnly: 88,
			readsAfterMove: 650, staleReads: 650},
	}
	var b strings.Builder
	renderFailover(&b, results)
	want := `
failover:

| client | first write acknowledged after the promotion | read errors | write errors (of them 25006 from the old primary) | ambiguous | lost | duplicated | reads after the switch answered by the old primary |
|---|--:|--:|--:|--:|--:|--:|--:|
| pgsteady | 450 ms | 0 | 0 (0) | 1 | 0 | 0 | 0 of 700 |
| pgxpool | none | 0 | 90 (88) | 0 | 0 | 0 | 650 of 650 |
`
	if got := b.String(); got != want {
		t.Errorf("renderFailover:\n%s\nwant:\n%s", got, want)
	}
	b.Reset()
	renderFailover(&b, results[:1])
	if b.Len() != 0 {
		t.Errorf("renderFailover without a failover wrote %q", b.String())
	}
}

func TestShorten(t *testing.T) {
	if got := shorten("héllo", 2); got != "h…" {
		t.Errorf("shorten cut inside a rune: %q", got)
	}
	if got := shorten("abc", 3); got != "abc" {
		t.Errorf("shorten(abc, 3) = %q", got)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, new(strings.Builder))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.faults) != len(faults)+len(replicaFaults) || o.duration != 10*time.Second || o.work.readers != 8 || o.work.writers != 2 || o.work.timeout != 10*time.Second {
		t.Errorf("defaults = %+v", o)
	}
	o, err = parseFlags([]string{"-faults", "kill, restart", "-readers", "12"}, new(strings.Builder))
	if err != nil || len(o.faults) != 2 || o.faults[1].name != "restart" || o.work.readers != 12 {
		t.Errorf("parseFlags = %+v, %v", o, err)
	}
	if o.noResolve {
		t.Error("commit resolution is off by default")
	}
	if o, _ := parseFlags([]string{"-commit-resolution=false"}, new(strings.Builder)); !o.noResolve {
		t.Error("-commit-resolution=false left resolution on")
	}
	for _, args := range [][]string{{"-faults", "nope"}, {"-readers", "0"}, {"-duration", "0s"}, {"extra"}} {
		if _, err := parseFlags(args, new(strings.Builder)); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestRenderReplicas(t *testing.T) {
	rs := []replicaResult{
		{fault: "replica killed", client: "pgsteady, replica reads", reads: 120, kvReads: 100, onStandby: 75, readBacks: 20, writes: 20, p50: time.Millisecond, p99: 4 * time.Millisecond},
		{fault: "replica killed", client: "pgsteady, primary only", reads: 120, kvReads: 100, readBacks: 20, stale: 1, writes: 20},
		{fault: "replica killed", client: plainName, reads: 120, kvReads: 100, readBacks: 20, stale: 9, writes: 20},
	}
	var b strings.Builder
	renderReplicas(&b, rs)
	if !strings.Contains(b.String(), "| replica killed | pgsteady, replica reads | 120 | 0 | 0 (20) | 20 | 0 | 1.0 ms | 4.0 ms | 75 % |") {
		t.Errorf("table:\n%s", b.String())
	}
	if missed := replicaMissedBar(rs); len(missed) != 1 || !strings.Contains(missed[0], "primary only") {
		t.Errorf("missed bar: %q, want the stale read back of the second row only (the control's are expected)", missed)
	}
	b.Reset()
	if renderReplicas(&b, nil); b.Len() != 0 {
		t.Errorf("no replica fault, yet %q", b.String())
	}
}
