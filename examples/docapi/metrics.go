package main

import (
	"bufio"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
)

// metrics counts docapi's own events for /metrics. It is safe for concurrent use.
type metrics struct {
	mu       sync.Mutex
	requests map[int]int64    // by status code
	logins   map[string]int64 // by result: ok, failed, throttled, busy
}

func newMetrics() *metrics {
	return &metrics{requests: map[int]int64{}, logins: map[string]int64{}}
}

func (m *metrics) request(status int) {
	m.mu.Lock()
	m.requests[status]++
	m.mu.Unlock()
}

func (m *metrics) login(result string) {
	m.mu.Lock()
	m.logins[result]++
	m.mu.Unlock()
}

// metricsHandler serves GET /metrics in the Prometheus text exposition format (version
// 0.0.4): the pool's [pool.Stats] and docapi's request and login counts. Like /healthz it needs
// no token: it holds no user data, and scrapers rarely carry one.
func (s *server) metricsHandler(w http.ResponseWriter, r *http.Request) {
	st := s.pool.Stats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	b := bufio.NewWriter(w)
	defer b.Flush()
	metric := func(name, typ, help string, samples ...sample) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		for _, smp := range samples {
			if smp.labels != "" {
				fmt.Fprintf(b, "%s{%s} %d\n", name, smp.labels, smp.v)
			} else {
				fmt.Fprintf(b, "%s %d\n", name, smp.v)
			}
		}
	}
	one := func(v int64) sample { return sample{v: v} }

	metric("pgsteady_pool_size", "gauge", "Configured permanent connections (Size).", one(int64(st.Size)))
	metric("pgsteady_pool_max_connections", "gauge", "Most connections the pool opens (Size + Overflow).", one(int64(st.MaxConns)))
	metric("pgsteady_pool_connections", "gauge", "Open connections, by state.",
		sample{`state="idle"`, int64(st.IdleConns)},
		sample{`state="in_use"`, int64(st.AcquiredConns)},
		sample{`state="other"`, int64(max(0, st.TotalConns-st.IdleConns-st.AcquiredConns))})
	metric("pgsteady_pool_overflow_connections", "gauge", "Open connections beyond Size.", one(int64(st.OverflowConns)))
	metric("pgsteady_pool_waiting", "gauge", "Callers waiting for a connection.", one(int64(st.Waiting)))
	metric("pgsteady_pool_acquires_total", "counter", "Connection acquire attempts.", one(st.AcquireCount))
	metric("pgsteady_pool_acquire_timeouts_total", "counter", "Acquire attempts that timed out.", one(st.AcquireTimeouts))
	metric("pgsteady_pool_retries_total", "counter", "Retries, by error class.",
		sample{`class="conflict"`, st.Retries.Conflict},
		sample{`class="conn-lost"`, st.Retries.ConnLost},
		sample{`class="not-sent"`, st.Retries.NotSent})
	metric("pgsteady_pool_failed_pings_total", "counter", "Pre-pings that failed.", one(st.FailedPings))
	metric("pgsteady_pool_connections_opened_total", "counter", "Connections opened.", one(st.Opened))
	metric("pgsteady_pool_connections_recycled_total", "counter", "Connections closed for age or idleness.", one(st.Recycled))
	metric("pgsteady_pool_connections_overflow_closed_total", "counter", "Connections closed on release while Size were idle.", one(st.OverflowClosed))
	metric("pgsteady_pool_connections_destroyed_total", "counter", "Connections closed because they failed.", one(st.Destroyed))

	s.metrics.mu.Lock()
	var reqs, logins []sample
	for _, code := range slices.Sorted(maps.Keys(s.metrics.requests)) {
		reqs = append(reqs, sample{`code="` + strconv.Itoa(code) + `"`, s.metrics.requests[code]})
	}
	for _, result := range slices.Sorted(maps.Keys(s.metrics.logins)) {
		logins = append(logins, sample{`result="` + result + `"`, s.metrics.logins[result]})
	}
	s.metrics.mu.Unlock()
	metric("docapi_http_requests_total", "counter", "HTTP requests answered, by status code.", reqs...)
	metric("docapi_logins_total", "counter", "Login attempts, by result (ok, failed, throttled, busy).", logins...)
}

type sample struct {
	labels string
	v      int64
}
