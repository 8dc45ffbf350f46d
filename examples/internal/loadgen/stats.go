package loadgen

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// Report is the outcome of a [Run].
type Report struct {
	Users     int
	Elapsed   time.Duration   // from the first request to the end of the last one
	Endpoints []EndpointStats // by name
	Total     EndpointStats   // every request
	Errors    []ErrorCount    // most frequent first
	Chaos     *ChaosStats     // nil without Config.ChaosDSN
	PoolStats map[string]any  // docapi's /debug/pool after the run, when it could be read
	Config    Config          // what ran
}

// EndpointStats sums up the requests to one endpoint ("GET /permis/all").
type EndpointStats struct {
	Name          string
	Requests      int
	Failures      int
	P50, P95, P99 time.Duration
	Max           time.Duration
}

// ErrorCount is how many requests failed the same way: same endpoint, same status (0 when no
// response came back) and same message (the body's "error", or the transport error).
type ErrorCount struct {
	Endpoint string
	Status   int
	Message  string
	Count    int
}

// ChaosStats counts what the chaos goroutine did.
type ChaosStats struct {
	Rounds int   // pg_terminate_backend sweeps made
	Killed int   // backends terminated, all sweeps together
	Errors int   // sweeps that failed (connecting as admin, for instance)
	Last   error // the last sweep error
}

// Failed returns the number of requests that failed.
func (r *Report) Failed() int { return r.Total.Failures }

// RequestsPerSecond is the throughput over the run.
func (r *Report) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Total.Requests) / r.Elapsed.Seconds()
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	rows := append(slices.Clone(r.Endpoints), r.Total)
	width := len("endpoint")
	for _, e := range rows {
		width = max(width, len(e.Name))
	}
	// Right-aligned columns; the names are padded so that they read left-aligned.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\trequests\tfailures\tp50\tp95\tp99\tmax\t\n", width, "endpoint")
	for _, e := range rows {
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%s\t%s\t%s\t%s\t\n", width, e.Name, e.Requests, e.Failures,
			ms(e.P50), ms(e.P95), ms(e.P99), ms(e.Max))
	}
	tw.Flush()
	fmt.Fprintf(w, "throughput: %.1f requests/s over %s (%d users)\n",
		r.RequestsPerSecond(), r.Elapsed.Round(time.Millisecond), r.Users)
	if c := r.Chaos; c != nil {
		fmt.Fprintf(w, "chaos: %d sweeps every %s, %d backends terminated", c.Rounds, r.Config.ChaosEvery, c.Killed)
		if c.Errors > 0 {
			fmt.Fprintf(w, ", %d sweeps failed (last: %v)", c.Errors, c.Last)
		}
		fmt.Fprintln(w)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
	} else {
		fmt.Fprintln(w, "errors (count, endpoint, status, message):")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %6d  %s  %d  %s\n", e.Count, e.Endpoint, e.Status, e.Message)
		}
	}
	if r.PoolStats != nil {
		fmt.Fprintf(w, "docapi pool: opened=%v destroyed=%v retries=%v acquire_timeouts=%v max=%v\n",
			r.PoolStats["opened"], r.PoolStats["destroyed"], r.PoolStats["retries"],
			r.PoolStats["acquire_timeouts"], r.PoolStats["max"])
	}
}

// ms prints a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.0fms", v)
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the nearest-rank
// method: the smallest value that at least p percent of the values do not exceed. It returns 0
// for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// summarize computes an endpoint's figures from its latencies.
func summarize(name string, durations []time.Duration, failures int) EndpointStats {
	d := slices.Clone(durations)
	slices.Sort(d)
	s := EndpointStats{Name: name, Requests: len(d), Failures: failures,
		P50: percentile(d, 50), P95: percentile(d, 95), P99: percentile(d, 99)}
	if len(d) > 0 {
		s.Max = d[len(d)-1]
	}
	return s
}

// recorder collects request outcomes from concurrent users. It is safe for concurrent use.
type recorder struct {
	mu        sync.Mutex
	durations map[string][]time.Duration
	failures  map[string]int
	errors    map[ErrorCount]int // key: Count zero
	first     time.Time
	last      time.Time
}

func newRecorder() *recorder {
	return &recorder{
		durations: map[string][]time.Duration{},
		failures:  map[string]int{},
		errors:    map[ErrorCount]int{},
	}
}

// record notes one request to endpoint that started at start and took d. A failed request has
// status >= 400 or 0 (no response), and msg says why.
func (rec *recorder) record(endpoint string, start time.Time, d time.Duration, failed bool, status int, msg string) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.first.IsZero() || start.Before(rec.first) {
		rec.first = start
	}
	if end := start.Add(d); end.After(rec.last) {
		rec.last = end
	}
	rec.durations[endpoint] = append(rec.durations[endpoint], d)
	if failed {
		rec.failures[endpoint]++
		rec.errors[ErrorCount{Endpoint: endpoint, Status: status, Message: msg}]++
	}
}

// report builds the figures: endpoints by name, errors most frequent first.
func (rec *recorder) report() *Report {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := &Report{Elapsed: rec.last.Sub(rec.first)}
	var all []time.Duration
	for name, d := range rec.durations {
		r.Endpoints = append(r.Endpoints, summarize(name, d, rec.failures[name]))
		all = append(all, d...)
	}
	slices.SortFunc(r.Endpoints, func(a, b EndpointStats) int { return cmp.Compare(a.Name, b.Name) })
	failures := 0
	for _, n := range rec.failures {
		failures += n
	}
	r.Total = summarize("total", all, failures)
	for e, n := range rec.errors {
		e.Count = n
		r.Errors = append(r.Errors, e)
	}
	slices.SortFunc(r.Errors, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Endpoint, b.Endpoint),
			cmp.Compare(a.Status, b.Status), cmp.Compare(a.Message, b.Message))
	})
	return r
}
