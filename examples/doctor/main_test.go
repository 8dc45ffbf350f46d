package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/pgsteady/pgsteady/pool/doctor"
)

// refusedDSN returns a DSN for a loopback port where nothing listens.
func refusedDSN(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "postgres://app:secret@" + addr + "/app?sslmode=require"
}

func noEnv(string) string { return "" }

func TestRun(t *testing.T) {
	t.Parallel()
	dsn := refusedDSN(t)
	tests := []struct {
		name   string
		args   []string
		status int
	}{
		{"refused, text", []string{dsn}, 1},
		{"refused, json", []string{"-json", "-replicas", "3", dsn}, 1},
		{"bad option", []string{"postgres://app@127.0.0.1/app?pool_size=0"}, 2},
		{"two arguments", []string{dsn, dsn}, 2},
		{"unknown flag", []string{"-nope", dsn}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			if got := run(context.Background(), tt.args, noEnv, &out, &errOut); got != tt.status {
				t.Fatalf("status %d, want %d; stderr: %s", got, tt.status, errOut.String())
			}
			if strings.Contains(out.String()+errOut.String(), "secret") {
				t.Error("output shows the password")
			}
			if tt.status != 1 {
				return
			}
			var ids []string
			if tt.args[0] == "-json" {
				var r doctor.Report
				if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
					t.Fatal(err)
				}
				for _, f := range r.Findings {
					ids = append(ids, string(f.Level)+" "+f.ID)
				}
			} else {
				ids = strings.Fields(out.String())
			}
			if !strings.Contains(strings.Join(ids, " "), "fail path.tcp") {
				t.Errorf("no failed path.tcp in %s", out.String())
			}
		})
	}
}
