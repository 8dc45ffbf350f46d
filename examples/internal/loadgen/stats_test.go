package loadgen

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", []time.Duration{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p95 of 1..100", hundred, 95, 95 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p100 is the max", hundred, 100, 100 * time.Millisecond},
		{"tiny p is the min", hundred, 0.001, time.Millisecond},
		{"p50 of 4 is the 2nd", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p95 of 4 is the 4th", []time.Duration{1, 2, 3, 4}, 95, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestRecorderReport(t *testing.T) {
	rec := newRecorder()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	rec.record("GET /permis/all", t0, 10*ms, false, 200, "")
	rec.record("GET /permis/all", t0.Add(time.Second), 30*ms, true, 503, "database unavailable, retry later")
	rec.record("GET /permis/all", t0.Add(2*time.Second), 20*ms, true, 503, "database unavailable, retry later")
	rec.record("GET /cin/all", t0.Add(500*ms), 5*ms, true, 0, "connection refused")
	rec.record("POST /cin/process", t0.Add(3*time.Second), 40*ms, true, 503, "database unavailable, retry later")
	r := rec.report()

	if r.Elapsed != 3*time.Second+40*ms {
		t.Errorf("Elapsed = %v, want from the first start to the last end", r.Elapsed)
	}
	wantEndpoints := []EndpointStats{
		{Name: "GET /cin/all", Requests: 1, Failures: 1, P50: 5 * ms, P95: 5 * ms, P99: 5 * ms, Max: 5 * ms},
		{Name: "GET /permis/all", Requests: 3, Failures: 2, P50: 20 * ms, P95: 30 * ms, P99: 30 * ms, Max: 30 * ms},
		{Name: "POST /cin/process", Requests: 1, Failures: 1, P50: 40 * ms, P95: 40 * ms, P99: 40 * ms, Max: 40 * ms},
	}
	if !reflect.DeepEqual(r.Endpoints, wantEndpoints) {
		t.Errorf("Endpoints = %+v\nwant %+v", r.Endpoints, wantEndpoints)
	}
	if r.Total.Requests != 5 || r.Failed() != 4 || r.Total.Max != 40*ms {
		t.Errorf("Total = %+v", r.Total)
	}
	wantErrors := []ErrorCount{ // most frequent first, then by endpoint
		{Endpoint: "GET /permis/all", Status: 503, Message: "database unavailable, retry later", Count: 2},
		{Endpoint: "GET /cin/all", Status: 0, Message: "connection refused", Count: 1},
		{Endpoint: "POST /cin/process", Status: 503, Message: "database unavailable, retry later", Count: 1},
	}
	if !reflect.DeepEqual(r.Errors, wantErrors) {
		t.Errorf("Errors = %+v\nwant %+v", r.Errors, wantErrors)
	}

	var out strings.Builder
	r.Print(&out)
	for _, want := range []string{"GET /permis/all", "total", "requests/s", "connection refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPickTaskWeights(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	counts := map[task]int{}
	const n = 17000
	for range n {
		counts[pickTask(rnd)]++
	}
	// GET /permis/all has weight 10 of 17.
	if got := counts[task{weight: 10, kind: "permis"}]; got < n*55/100 || got > n*63/100 {
		t.Errorf("GET /permis/all picked %d times of %d, want about 10/17", got, n)
	}
	if len(counts) != len(tasks) {
		t.Errorf("%d distinct tasks picked, want %d", len(counts), len(tasks))
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func(c Config) Config { c.Email, c.Password = "a@b.c", "pw"; return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"defaults", ok(DefaultConfig()), false},
		{"localhost", ok(Config{URL: "http://localhost:9000/"}), false},
		{"IPv6 loopback", ok(Config{URL: "http://[::1]:8080"}), false},
		{"127.0.0.2", ok(Config{URL: "http://127.0.0.2:8080"}), false},
		{"remote host", ok(Config{URL: "http://example.com"}), true},
		{"remote IP", ok(Config{URL: "http://10.0.0.1:8080"}), true},
		{"remote allowed", ok(Config{URL: "http://example.com", AllowRemote: true}), false},
		{"not http", ok(Config{URL: "ftp://127.0.0.1"}), true},
		{"no credentials", Config{}, true},
		{"think max below min", ok(Config{ThinkMin: 2 * time.Second, ThinkMax: time.Second}), true},
		{"no think time", ok(Config{ThinkMin: 0, ThinkMax: 0}), false},
		{"chaos on loopback", ok(Config{ChaosDSN: "postgres://postgres:x@127.0.0.1:5432/postgres"}), false},
		{"chaos on a socket", ok(Config{ChaosDSN: "host=/var/run/postgresql user=postgres"}), false},
		{"chaos remote", ok(Config{ChaosDSN: "postgres://postgres:x@db.example.com/postgres"}), true},
		{"chaos remote fallback", ok(Config{ChaosDSN: "postgres://postgres:x@127.0.0.1,db.example.com/postgres"}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.validate()
			if (err != nil) != tt.wantErr {
				t.Errorf("validate() = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}
