package main

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool"
)

// With telemetry, as run sets it up, /metrics is the OpenTelemetry Prometheus exporter's: the
// pool's semantic-convention metrics, the wait-time histogram, and docapi's own counts.
func TestMetricsThroughOpenTelemetry(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	ctx := t.Context()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tel, err := newTelemetry()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tel.close(); err != nil {
			t.Error(err)
		}
	})
	c, err := pool.NewCluster(ctx, cfg, nil, pool.WithMemberOptions(pool.WithLogger(logger), pool.WithObserver(tel.observer), pool.WithObserver(requestObserver{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	p := c.Primary()
	if err := migrate(ctx, p, logger); err != nil {
		t.Fatal(err)
	}
	if err := tel.register(p); err != nil {
		t.Fatal(err)
	}
	api := newServer(c, logger, withTelemetry(tel), withOpsApart())
	ts := httptest.NewServer(api)
	t.Cleanup(ts.Close)
	ops := httptest.NewServer(api.opsHandler()) // DOCAPI_OPS_ADDR's listener
	t.Cleanup(ops.Close)

	resp, err := ts.Client().Post(ts.URL+"/auth/login", "application/json",
		strings.NewReader(`{"email":"nobody@example.com","password":"not the password"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("login of an unknown user: %d, want 401", resp.StatusCode)
	}

	resp, err = ts.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/metrics on the API with the ops listener apart: %d, want 404", resp.StatusCode)
	}
	resp, err = ops.Client().Get(ops.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// sample returns the value of the sample of family name whose labels include all of
	// labels, and whether there is one.
	sample := func(name string, labels ...string) (float64, bool) {
		for sc := bufio.NewScanner(bytes.NewReader(body)); sc.Scan(); {
			line := sc.Text()
			series, value, ok := strings.Cut(line, " ")
			if !ok || strings.HasPrefix(line, "#") || (series != name && !strings.HasPrefix(series, name+"{")) {
				continue
			}
			all := true
			for _, l := range labels {
				all = all && strings.Contains(series, l)
			}
			if !all {
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Errorf("sample %q: %v", line, err)
			}
			return v, true
		}
		return 0, false
	}
	name := `db_client_connection_pool_name="docapi"`
	for _, c := range []struct {
		name   string
		labels []string
		check  func(float64) bool
		want   string
	}{
		{"db_client_connection_count", []string{name, `db_client_connection_state="idle"`}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"db_client_connection_count", []string{name, `db_client_connection_state="used"`}, func(v float64) bool { return v >= 0 }, ">= 0"},
		{"db_client_connection_max", []string{name}, func(v float64) bool { return v == float64(p.Stats().MaxConns) }, "Stats().MaxConns"},
		{"db_client_connection_idle_max", []string{name}, func(v float64) bool { return v == float64(p.Stats().Size) }, "Stats().Size"},
		{"db_client_connection_timeouts_total", []string{name}, func(v float64) bool { return v == 0 }, "0"},
		{"pgsteady_pool_connection_opened_total", []string{name}, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"db_client_connection_wait_time_seconds_count", []string{name}, func(v float64) bool { return v >= 1 }, ">= 1 (the login's acquire)"},
		{"docapi_logins_total", []string{`result="failed"`}, func(v float64) bool { return v == 1 }, "1"},
		{"docapi_http_requests_total", []string{`code="401"`}, func(v float64) bool { return v == 1 }, "1"},
	} {
		v, ok := sample(c.name, c.labels...)
		if !ok {
			t.Errorf("no %s%v in /metrics:\n%s", c.name, c.labels, body)
			continue
		}
		if !c.check(v) {
			t.Errorf("%s%v = %v, want %s", c.name, c.labels, v, c.want)
		}
	}

	// Every series the README's /metrics excerpt shows is served, with its labels.
	for _, line := range readmeMetrics(t) {
		series, _, _ := strings.Cut(line, " ")
		name, labels, _ := strings.Cut(strings.TrimSuffix(series, "}"), "{")
		var want []string
		for l := range strings.SplitSeq(labels, ",") {
			if l != "" {
				want = append(want, l)
			}
		}
		if _, ok := sample(name, want...); !ok {
			t.Errorf("the README shows %q, which /metrics does not serve:\n%s", line, body)
		}
	}
	if !bytes.Contains(body, []byte("# TYPE db_client_connection_wait_time_seconds histogram")) {
		t.Errorf("db_client_connection_wait_time_seconds is not a histogram:\n%s", body)
	}
}

// readmeMetrics returns the sample lines of docapi's README's /metrics excerpt: the lines after the
// curl of /metrics, up to the next command.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("README.md") // examples/docapi/README.md
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for line := range strings.SplitSeq(string(readme), "\n") {
		switch {
		case strings.HasPrefix(line, "$ ") && strings.Contains(line, "/metrics"):
			in = true
		case strings.HasPrefix(line, "$ ") || strings.HasPrefix(line, "```"):
			in = false
		case in && line != "":
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		t.Fatal("no /metrics excerpt in the README")
	}
	return out
}
