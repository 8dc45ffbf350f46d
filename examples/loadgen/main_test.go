package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path != "/auth/login" {
			w.WriteHeader(http.StatusCreated)
		}
		w.Write([]byte(`{"token":"t","items":[]}`))
	}))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"down"}`))
	}))
	defer failing.Close()

	common := []string{"-email", "a@example.com", "-password", "pw", "-users", "2", "-duration", "100ms", "-think-min", "0", "-think-max", "0"}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"all requests succeed", append([]string{"-url", ok.URL}, common...), 0},
		{"requests fail", append([]string{"-url", failing.URL}, common...), 1},
		{"remote URL refused", append([]string{"-url", "http://192.0.2.1"}, common...), 2},
		{"unknown flag", []string{"-bogus"}, 2},
		{"stray argument", append(common, "extra"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if got := run(t.Context(), tt.args, &out, io.Discard); got != tt.want {
				t.Errorf("exit status %d, want %d\n%s", got, tt.want, out.String())
			}
		})
	}
}
