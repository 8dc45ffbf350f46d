// Package loadgen is the load generator of examples/loadgen, the seed's Locust test in Go:
// simulated users log in to docapi, then loop over weighted tasks (mostly GET /permis/all, as
// the seed's locustfile did, plus the other lists and uploads), with a think time between
// tasks. Optionally a chaos goroutine terminates every PostgreSQL client backend at intervals,
// to show that docapi's callers do not see it.
//
// It lives under examples/internal so that docapi's end-to-end test can run it against the
// real server.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults of [Config].
const (
	DefaultURL        = "http://127.0.0.1:8080"
	DefaultUsers      = 10
	DefaultDuration   = 30 * time.Second
	DefaultThinkMin   = 1 * time.Second // Locust's between(1, 3)
	DefaultThinkMax   = 3 * time.Second
	DefaultChaosEvery = 3 * time.Second
	// RequestTimeout bounds each request.
	RequestTimeout = 30 * time.Second
)

// Config says what to run. The zero value of a field takes its default, except the think
// times, which may be 0; use [DefaultConfig] for Locust's.
type Config struct {
	URL        string        // docapi's base URL; its host must be a loopback address unless AllowRemote
	Email      string        // a docapi user
	Password   string        //
	Users      int           // concurrent simulated users; DefaultUsers
	Duration   time.Duration // how long users start new requests; DefaultDuration
	ThinkMin   time.Duration // pause between two tasks of a user, uniform in [ThinkMin, ThinkMax]
	ThinkMax   time.Duration //
	ChaosDSN   string        // a superuser DSN: when set, terminate all client backends every ChaosEvery
	ChaosEvery time.Duration // DefaultChaosEvery
	// Burst, when > 0, makes users fire together: after each task a user waits for the next
	// multiple of Burst since the start of the run instead of thinking (ThinkMin and ThinkMax
	// are ignored), so that all users' requests arrive in bursts, as behind a load balancer
	// that batches them. 0 (the default) keeps the think time.
	Burst       time.Duration
	AllowRemote bool // allow a URL or chaos DSN whose host is not a loopback address
	// Client sends the requests; nil means a client made for the run, which uses no proxy.
	Client *http.Client
}

// DefaultConfig returns the defaults, with Locust's think time of 1 to 3 s.
func DefaultConfig() Config {
	return Config{URL: DefaultURL, Users: DefaultUsers, Duration: DefaultDuration,
		ThinkMin: DefaultThinkMin, ThinkMax: DefaultThinkMax, ChaosEvery: DefaultChaosEvery}
}

// validate fills defaults in and checks c.
func (c *Config) validate() error {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	c.URL = strings.TrimRight(c.URL, "/")
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.ChaosEvery == 0 {
		c.ChaosEvery = DefaultChaosEvery
	}
	switch {
	case c.Email == "" || c.Password == "":
		return errors.New("loadgen: an email and a password are required")
	case c.Users < 0:
		return fmt.Errorf("loadgen: users must be >= 1, got %d", c.Users)
	case c.Duration < 0:
		return fmt.Errorf("loadgen: duration must be > 0, got %s", c.Duration)
	case c.ThinkMin < 0 || c.ThinkMax < c.ThinkMin:
		return fmt.Errorf("loadgen: think times must satisfy 0 <= min <= max, got %s and %s", c.ThinkMin, c.ThinkMax)
	case c.Burst < 0:
		return fmt.Errorf("loadgen: burst interval must be >= 0, got %s", c.Burst)
	case c.ChaosEvery < 0:
		return fmt.Errorf("loadgen: chaos interval must be > 0, got %s", c.ChaosEvery)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadgen: url %q is not an http(s) URL", c.URL)
	}
	if !c.AllowRemote && !isLoopback(u.Hostname()) {
		return fmt.Errorf("loadgen: url host %q is not a loopback address (use -allow-remote to load a remote server)", u.Hostname())
	}
	if c.ChaosDSN != "" && !c.AllowRemote {
		if err := checkChaosDSN(c.ChaosDSN); err != nil {
			return err
		}
	}
	return nil
}

// isLoopback reports whether host is "localhost" or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run loads docapi as cfg says and returns the report. Users start new tasks for
// cfg.Duration; requests then in flight are waited for. ctx cancels the run early. Run
// returns an error only when the run could not be made (bad config); failed requests are in
// the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			Timeout: RequestTimeout,
			Transport: &http.Transport{
				Proxy:               nil, // straight to the (loopback) server
				MaxIdleConnsPerHost: cfg.Users,
				IdleConnTimeout:     time.Minute,
			},
		}
		defer client.CloseIdleConnections()
	}

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	rec := newRecorder()

	var chaos *ChaosStats
	var chaosDone chan struct{}
	if cfg.ChaosDSN != "" {
		chaos = &ChaosStats{}
		chaosDone = make(chan struct{})
		go func() {
			defer close(chaosDone)
			runChaos(runCtx, cfg.ChaosDSN, cfg.ChaosEvery, chaos)
		}()
	}

	start := time.Now()
	var wg sync.WaitGroup
	var lastToken string
	var tokenMu sync.Mutex
	for i := range cfg.Users {
		wg.Go(func() {
			u := &user{cfg: &cfg, client: client, rec: rec, rnd: rand.New(rand.NewPCG(rand.Uint64(), uint64(i))), start: start}
			u.run(ctx, runCtx)
			tokenMu.Lock()
			if u.token != "" {
				lastToken = u.token
			}
			tokenMu.Unlock()
		})
	}
	wg.Wait()
	cancel()
	if chaosDone != nil {
		<-chaosDone
	}

	r := rec.report()
	r.Users, r.Config, r.Chaos = cfg.Users, cfg, chaos
	r.Config.Password = ""
	if lastToken != "" {
		r.PoolStats = poolStats(ctx, client, cfg.URL, lastToken)
	}
	return r, nil
}

// user is one simulated user, as Locust's HttpUser.
type user struct {
	cfg    *Config
	client *http.Client
	rec    *recorder
	rnd    *rand.Rand
	token  string
	start  time.Time // the run's start, from which bursts are counted
}

// task is one weighted action of a user.
type task struct {
	weight int
	kind   string
	upload bool
}

// tasks: mostly GET /permis/all, as in the seed's locustfile, then the other lists, then
// uploads of each kind.
var tasks = []task{
	{weight: 10, kind: "permis"},
	{weight: 2, kind: "cin"},
	{weight: 2, kind: "gris"},
	{weight: 1, kind: "permis", upload: true},
	{weight: 1, kind: "cin", upload: true},
	{weight: 1, kind: "gris", upload: true},
}

func pickTask(rnd *rand.Rand) task {
	total := 0
	for _, t := range tasks {
		total += t.weight
	}
	n := rnd.IntN(total)
	for _, t := range tasks {
		if n < t.weight {
			return t
		}
		n -= t.weight
	}
	panic("unreachable")
}

// run logs in (again after a failure), then does tasks until runCtx is done. Requests use ctx,
// so that the end of the run does not cut them short.
func (u *user) run(ctx, runCtx context.Context) {
	for runCtx.Err() == nil {
		if u.token == "" {
			u.login(ctx)
		} else {
			t := pickTask(u.rnd)
			if t.upload {
				u.upload(ctx, t.kind)
			} else {
				u.do(ctx, "GET /"+t.kind+"/all", http.MethodGet, "/"+t.kind+"/all", "", nil, nil)
			}
		}
		u.think(runCtx)
	}
}

func (u *user) think(ctx context.Context) {
	d := u.cfg.ThinkMin
	if span := u.cfg.ThinkMax - u.cfg.ThinkMin; span > 0 {
		d += time.Duration(u.rnd.Int64N(int64(span) + 1))
	}
	if u.cfg.Burst > 0 {
		d = untilNextBurst(u.start, time.Now(), u.cfg.Burst)
	}
	if d == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// untilNextBurst is how long after now the next burst of a run started at start fires, one
// every every: at the next multiple of every since start (a user that finishes exactly on
// one waits for the following one).
func untilNextBurst(start, now time.Time, every time.Duration) time.Duration {
	since := now.Sub(start)
	return every - since%every
}

func (u *user) login(ctx context.Context) {
	body, _ := json.Marshal(map[string]string{"email": u.cfg.Email, "password": u.cfg.Password})
	var resp struct {
		Token string `json:"token"`
	}
	if u.do(ctx, "POST /auth/login", http.MethodPost, "/auth/login", "application/json", body, &resp) {
		u.token = resp.Token
	}
}

func (u *user) upload(ctx context.Context, kind string) {
	body, contentType := uploadBody(u.rnd, kind)
	hdr := http.Header{"Idempotency-Key": {fmt.Sprintf("loadgen-%016x%016x", u.rnd.Uint64(), u.rnd.Uint64())}}
	u.do(ctx, "POST /"+kind+"/process", http.MethodPost, "/"+kind+"/process", contentType, body, nil, hdr)
}

// do sends one request and records it under endpoint. It reports success (a 2xx status);
// out, when not nil, receives the JSON answer.
func (u *user) do(ctx context.Context, endpoint, method, path, contentType string, body []byte, out any, hdrs ...http.Header) bool {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL was validated
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	for _, h := range hdrs {
		for k, v := range h {
			req.Header[k] = v
		}
	}

	start := time.Now()
	resp, err := u.client.Do(req)
	if err != nil {
		u.rec.record(endpoint, start, time.Since(start), true, 0, transportMessage(err))
		return false
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	elapsed := time.Since(start)
	switch {
	case err != nil:
		u.rec.record(endpoint, start, elapsed, true, resp.StatusCode, "reading the body: "+transportMessage(err))
		return false
	case resp.StatusCode >= 400:
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		u.rec.record(endpoint, start, elapsed, true, resp.StatusCode, msg)
		if resp.StatusCode == http.StatusUnauthorized {
			u.token = "" // log in again
		}
		return false
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			u.rec.record(endpoint, start, elapsed, true, resp.StatusCode, "malformed JSON answer")
			return false
		}
	}
	u.rec.record(endpoint, start, elapsed, false, resp.StatusCode, "")
	return true
}

// transportMessage is err without the URL, which *url.Error repeats for every request.
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// poolStats reads docapi's /debug/pool: the primary's pool statistics, or nil.
func poolStats(ctx context.Context, client *http.Client, base, token string) map[string]any {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/debug/pool", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var m map[string]any
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&m) != nil {
		return nil
	}
	// docapi serves a cluster's statistics: every member's, each with its pool's.
	members, _ := m["members"].([]any)
	for _, mm := range members {
		if member, _ := mm.(map[string]any); member["role"] == "primary" {
			p, _ := member["pool"].(map[string]any)
			return p
		}
	}
	return nil
}
