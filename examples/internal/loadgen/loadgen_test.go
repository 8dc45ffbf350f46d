package loadgen

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeDocapi answers like docapi, except that GET /gris/all always fails with 503, and checks
// what loadgen sends.
func fakeDocapi(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer tok" {
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(map[string]string{"error": "no token"})
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("POST /auth/login", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Email, Password string }
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.Email != "u@example.com" || req.Password != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": "tok"})
	})
	for _, kind := range []string{"permis", "cin", "gris"} {
		mux.HandleFunc("GET /"+kind+"/all", authed(func(w http.ResponseWriter, r *http.Request) {
			if kind == "gris" {
				w.WriteHeader(http.StatusServiceUnavailable)
				json.NewEncoder(w).Encode(map[string]string{"error": "boom"})
				return
			}
			w.Write([]byte(`{"items":[]}`))
		}))
		mux.HandleFunc("POST /"+kind+"/process", authed(func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			f, _, err := r.FormFile("image")
			buf := make([]byte, 512)
			if err == nil {
				n, _ := f.Read(buf)
				buf = buf[:n]
			}
			if err != nil || http.DetectContentType(buf) != "image/png" ||
				!strings.HasPrefix(r.Header.Get("Idempotency-Key"), "loadgen-") || len(r.MultipartForm.Value) < 5 {
				http.Error(w, "bad upload", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":1}`))
		}))
	}
	mux.HandleFunc("GET /debug/pool", authed(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"members":[{"role":"primary","pool":{"opened":3}}]}`))
	}))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return ts
}

func TestRunAgainstFake(t *testing.T) {
	ts := fakeDocapi(t)
	r, err := Run(t.Context(), Config{URL: ts.URL, Email: "u@example.com", Password: "pw",
		Users: 3, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var gris, logins int
	for _, e := range r.Endpoints {
		switch e.Name {
		case "GET /gris/all":
			gris = e.Requests
		case "POST /auth/login":
			logins = e.Requests
		}
	}
	if logins != 3 {
		t.Errorf("%d logins, want one per user", logins)
	}
	if gris == 0 || r.Failed() != gris {
		t.Fatalf("%d failures, want exactly the %d GET /gris/all\n%+v", r.Failed(), gris, r.Errors)
	}
	want := ErrorCount{Endpoint: "GET /gris/all", Status: 503, Message: "boom", Count: gris}
	if len(r.Errors) != 1 || r.Errors[0] != want {
		t.Errorf("Errors = %+v, want [%+v]", r.Errors, want)
	}
	if r.PoolStats["opened"] != float64(3) {
		t.Errorf("PoolStats = %v", r.PoolStats)
	}
}

func TestRunWrongPassword(t *testing.T) {
	ts := fakeDocapi(t)
	r, err := Run(t.Context(), Config{URL: ts.URL, Email: "u@example.com", Password: "nope",
		Users: 1, Duration: 100 * time.Millisecond, ThinkMin: 10 * time.Millisecond, ThinkMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed() == 0 || r.Failed() != r.Total.Requests || r.Errors[0].Status != http.StatusUnauthorized {
		t.Errorf("every login should fail with 401: %+v", r.Errors)
	}
}

func TestRunRefusesRemote(t *testing.T) {
	_, err := Run(t.Context(), Config{URL: "http://192.0.2.1:8080", Email: "u", Password: "p"})
	if err == nil {
		t.Error("Run accepted a non-loopback URL")
	}
}

func TestUntilNextBurst(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	const every = 500 * time.Millisecond
	for _, tt := range []struct {
		name  string
		since time.Duration
		want  time.Duration
	}{
		{"at the start: the next burst", 0, every},
		{"within the first interval", 120 * time.Millisecond, 380 * time.Millisecond},
		{"exactly on a burst: the following one", 2 * every, every},
		{"late by more than an interval: the next multiple", 1300 * time.Millisecond, 200 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := untilNextBurst(start, start.Add(tt.since), every); got != tt.want {
				t.Fatalf("untilNextBurst(+%v) = %v, want %v", tt.since, got, tt.want)
			}
		})
	}
}
