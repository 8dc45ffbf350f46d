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

func TestReplicaConfigs(t *testing.T) {
	tests := []struct {
		name, list string
		want       int  // replicas
		wantErr    bool // an error naming the replica, without its password
	}{
		{"unset", "", 0, false},
		{"one", "postgres://app:s3cret@10.0.0.2/docs", 1, false},
		{"two, spaced", " postgres://app:s3cret@10.0.0.2/docs , postgres://app:s3cret@10.0.0.3/docs", 2, false},
		{"an empty one", "postgres://app:s3cret@10.0.0.2/docs,", 0, true},
		{"a bad one", "postgres://app:s3cret@10.0.0.2/docs,postgres://app:s3cret@10.0.0.3:99999/docs", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := replicaConfigs(tt.list)
			if (err != nil) != tt.wantErr || len(got) != tt.want {
				t.Fatalf("replicaConfigs: %d replicas, err %v; want %d, error %v", len(got), err, tt.want, tt.wantErr)
			}
			if err != nil && (strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "replica 2")) {
				t.Errorf("error %q: want replica 2 named and no password", err)
			}
		})
	}
}
