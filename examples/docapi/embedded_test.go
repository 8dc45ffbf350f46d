package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/pgsteady/pgsteady/examples/internal/loadgen"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// docapiProcess is docapi started as `go -C examples run ./docapi` would be, with no database
// configured and no Docker engine (DOCKER_HOST points nowhere), so that the embedded database
// comes from the PostgreSQL binaries on this machine. It is this test binary, rerun to call main.
type docapiProcess struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	seen  []string
}

func startDocapi(t *testing.T, extraEnv ...string) *docapiProcess {
	t.Helper()
	pgharness.RequireLocal(t)
	return startDocapiWith(t, append([]string{"DOCKER_HOST=unix:///nonexistent.sock"}, extraEnv...)...)
}

// startDocapiWith starts docapi's process with no database configured and env added.
func startDocapiWith(t *testing.T, env ...string) *docapiProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDocapiProcess$", "-test.short")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "DATABASE_URL" && !strings.HasPrefix(k, "DB_") && k != "PGHOST" && k != "PGSERVICE" { // no database configured
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "DOCAPI_TEST_PROCESS=1", "PORT=0", "DOCAPI_PRINT_ADMIN_DSN=1", "DOCAPI_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &docapiProcess{t: t, cmd: cmd, lines: make(chan string, 100)}
	go func() {
		defer close(p.lines)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// TestDocapiProcess is docapi's main, run by startDocapi in a child process.
func TestDocapiProcess(t *testing.T) {
	if os.Getenv("DOCAPI_TEST_PROCESS") != "1" {
		t.Skip("docapi's process for the embedded database tests; runs only in their child process")
	}
	main()
}

// waitFor returns the text after the first line (from now on) that contains marker.
func (p *docapiProcess) waitFor(marker string) string {
	p.t.Helper()
	timeout := time.After(2 * time.Minute) // a ceiling for a stuck process, not a timing assertion
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("docapi ended before printing %q; it printed:\n%s", marker, strings.Join(p.seen, "\n"))
			}
			p.seen = append(p.seen, line)
			if _, after, found := strings.Cut(line, marker); found {
				return after
			}
		case <-timeout:
			p.t.Fatalf("docapi did not print %q; it printed:\n%s", marker, strings.Join(p.seen, "\n"))
		}
	}
}

// stop sends sig and returns the exit status and the rest of the output.
func (p *docapiProcess) stop(sig os.Signal) (int, string) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	var rest []string
	for line := range p.lines {
		rest = append(rest, line)
	}
	return p.wait(), strings.Join(rest, "\n")
}

func (p *docapiProcess) wait() int {
	p.t.Helper()
	err := p.cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.Exited():
		return exit.ExitCode()
	default:
		p.t.Fatalf("docapi: %v", err)
		return -1
	}
}

// assertNothingLeft checks that the docapi process left no cluster folder, no server process
// and, when addr is known, no listener.
func (p *docapiProcess) assertNothingLeft(addr string) {
	p.t.Helper()
	prefix := filepath.Join(os.TempDir(), "pgsteady-local-"+strconv.Itoa(p.cmd.Process.Pid)+"-")
	if left, _ := filepath.Glob(prefix + "*"); len(left) > 0 {
		p.t.Errorf("cluster folders left behind: %v", left)
	}
	if pids := processesMentioning(prefix); len(pids) > 0 {
		p.t.Errorf("server processes left behind: %v", pids)
	}
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.t.Errorf("database port %s not free: %v", addr, err)
			return
		}
		ln.Close()
	}
}

// TestEmbeddedLocalDatabase runs docapi with no database configured and no Docker engine, as a
// new user on a fresh machine would: the README's session (login, upload, list) works, the
// load generator's -chaos works against the printed superuser DSN, and Ctrl-C leaves no
// process, folder or port behind.
func TestEmbeddedLocalDatabase(t *testing.T) {
	p := startDocapi(t)
	if note := p.waitFor("docapi: Docker: "); !strings.Contains(note, "nonexistent.sock") {
		t.Errorf("the Docker note does not name DOCKER_HOST: %q", note)
	}
	what := p.waitFor("docapi: embedded database: ")
	if !strings.HasPrefix(what, "PostgreSQL ") || !strings.Contains(what, " from ") {
		t.Errorf("start-up does not say it used the local binaries: %q", what)
	}
	dbURL, err := url.Parse(p.waitFor("docapi: embedded database "))
	if err != nil {
		t.Fatal(err)
	}
	admin := p.waitFor("docapi: embedded database superuser ")
	password := p.waitFor("docapi: demo user " + demoEmail + ", password ")
	base := p.waitFor("docapi: listening on ")

	token := localLogin(t, base, demoEmail, password)
	png, _ := base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
	fields := map[string]string{
		"numero_permis": "12/345678", "nom_fr": "Alaoui", "prenom_fr": "Amine", "nom_ar": "العلوي",
		"prenom_ar": "أمين", "date_naissance": "1990-01-01", "lieu_naissance": "Rabat",
		"date_delivrance": "2015-05-20", "date_expiration": "2025-05-19", "categories": "A1,B",
	}
	if status, body := localUpload(t, base, token, "permis", fields, png); status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, body)
	}
	var list struct {
		Items []struct {
			NumeroPermis string `json:"numero_permis"`
		}
	}
	localGetJSON(t, base+"/permis/all?limit=10", token, &list)
	if len(list.Items) != 1 || list.Items[0].NumeroPermis != "12/345678" {
		t.Fatalf("list: %+v, want the one uploaded card", list)
	}

	r, err := loadgen.Run(t.Context(), loadgen.Config{URL: base, Email: demoEmail, Password: password,
		Users: 4, Duration: 3 * time.Second, ChaosDSN: admin, ChaosEvery: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Chaos == nil || r.Chaos.Killed == 0 || r.Chaos.Errors > 0 {
		t.Errorf("loadgen -chaos against the local database: %+v, want backends killed and no sweep error", r.Chaos)
	}
	if r.Failed() != 0 || r.Total.Requests == 0 {
		t.Errorf("loadgen: %d of %d requests failed under chaos, want some requests and no failure", r.Failed(), r.Total.Requests)
	}

	status, rest := p.stop(os.Interrupt)
	if status != 0 || !strings.Contains(rest, "embedded database removed") {
		t.Errorf("after Ctrl-C: exit status %d, output %q; want 0 and the database removed", status, rest)
	}
	p.assertNothingLeft(dbURL.Host)
}

// With a Docker engine, docapi's embedded database runs in Docker, and Ctrl-C removes the
// container.
func TestEmbeddedDockerDatabase(t *testing.T) {
	pgharness.Require(t, srv) // a Docker engine answers
	p := startDocapiWith(t)
	if what := p.waitFor("docapi: embedded database: "); !strings.HasPrefix(what, "PostgreSQL in Docker") {
		t.Fatalf("start-up does not say it used Docker: %q", what)
	}
	password := p.waitFor("docapi: demo user " + demoEmail + ", password ")
	base := p.waitFor("docapi: listening on ")
	localLogin(t, base, demoEmail, password)

	status, rest := p.stop(os.Interrupt)
	if status != 0 || !strings.Contains(rest, "embedded database removed") {
		t.Errorf("after Ctrl-C: exit status %d, output %q; want 0 and the database removed", status, rest)
	}
	docker, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer docker.Close()
	list, err := docker.ContainerList(t.Context(), client.ContainerListOptions{All: true,
		Filters: client.Filters{}.Add("label", "org.pgsteady.pid="+strconv.Itoa(p.cmd.Process.Pid))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) > 0 {
		t.Errorf("%d containers of docapi left behind", len(list.Items))
	}
}

// However docapi ends, the embedded database goes with it.
func TestEmbeddedLocalDatabaseIsRemoved(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	_, busyPort, _ := net.SplitHostPort(busy.Addr().String())

	tests := []struct {
		name       string
		env        []string
		stopAfter  string        // the output marker after which sig is sent; "" sends nothing
		delay      time.Duration // then waits this long
		sig        os.Signal     //
		wantStatus int
	}{
		{"on SIGTERM", nil, "docapi: listening on ", 0, syscall.SIGTERM, 0},
		{"on Ctrl-C as the start begins", nil, "docapi: no DATABASE_URL", 0, os.Interrupt, 1},
		{"on Ctrl-C while the cluster is made", nil, "docapi: Docker: ", 300 * time.Millisecond, os.Interrupt, 1},
		{"when the start fails after the database is up", []string{"PORT=" + busyPort}, "", 0, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startDocapi(t, tt.env...)
			var status int
			if tt.sig != nil {
				p.waitFor(tt.stopAfter)
				time.Sleep(tt.delay)
				status, _ = p.stop(tt.sig)
			} else {
				p.waitFor("docapi: embedded database: ") // the database was up
				for range p.lines {
				}
				status = p.wait()
			}
			if status != tt.wantStatus {
				t.Errorf("exit status %d, want %d; output:\n%s", status, tt.wantStatus, strings.Join(p.seen, "\n"))
			}
			p.assertNothingLeft("")
		})
	}
}

func localLogin(t *testing.T, base, email, password string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, err := http.Post(base+"/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		t.Fatalf("login: status %d, %v", resp.StatusCode, err)
	}
	return out.Token
}

func localUpload(t *testing.T, base, token, kind string, fields map[string]string, image []byte) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile("image", "card.png")
	fw.Write(image)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, base+"/"+kind+"/process", &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", "scan-0001")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func localGetJSON(t *testing.T, u, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// processesMentioning lists the processes whose command line contains s (a cluster's
// postmaster runs with -D <its folder>/data; its backends die with it).
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
