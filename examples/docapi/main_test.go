package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// TestRun starts docapi the way main does, on a configured database, logs in as the configured
// user, and shuts it down.
func TestRun(t *testing.T) {
	s := pgharness.Require(t, srv)
	dsn, err := s.NewDatabase(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", dsn) // config.FromEnv reads the process environment
	vars := map[string]string{
		"PORT":                 "0",
		"DOCAPI_LOG_LEVEL":     "warn",
		"DOCAPI_USER_EMAIL":    "Boss@Example.com",
		"DOCAPI_USER_PASSWORD": "long enough password",
	}
	env := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, stdout := io.Pipe()
	runErr := make(chan error, 1)
	go func() {
		runErr <- run(ctx, env, stdout)
		stdout.Close()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			lines <- sc.Text()
		}
	}()

	var base string
	for base == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("run ended before listening: %v", <-runErr)
			}
			if _, addr, found := strings.Cut(line, "listening on "); found {
				base = addr
			}
		case <-time.After(time.Minute):
			t.Fatal("docapi did not start listening")
		}
	}
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz: %v %v", resp, err)
	}
	resp, err := http.Post(base+"/auth/login", "application/json",
		strings.NewReader(`{"email":"boss@example.com","password":"long enough password"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || login.Token == "" {
		t.Fatalf("login as the configured user: status %d", resp.StatusCode)
	}

	cancel()
	var rest []string
	for line := range lines {
		rest = append(rest, line)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(strings.Join(rest, "\n"), "shutting down") {
		t.Errorf("no shutdown message in %q", rest)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestSetupUserNeedsBoth(t *testing.T) {
	env := func(k string) string {
		if k == "DOCAPI_USER_EMAIL" {
			return "a@example.com"
		}
		return ""
	}
	if err := setupUser(t.Context(), nil, env, false, io.Discard); err == nil {
		t.Error("no error with DOCAPI_USER_EMAIL alone")
	}
}
