package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

const (
	defaultLimit = 50
	maxLimit     = 200
	// maxJSONBody bounds the login request.
	maxJSONBody = 64 << 10
	// readyTimeout bounds the database check of GET /readyz.
	readyTimeout = 2 * time.Second
)

// server is docapi's HTTP API on a pgsteady pool.
type server struct {
	pool  *pool.Pool
	store *store
	log   *slog.Logger
	mux   *http.ServeMux
	today func() time.Time // for date validation
}

// newServer returns docapi's handler. The schema must be in place (see migrate).
func newServer(p *pool.Pool, logger *slog.Logger) http.Handler {
	s := &server{
		pool:  p,
		store: newStore(p, logger),
		log:   logger,
		mux:   http.NewServeMux(),
		today: func() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) },
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("POST /auth/login", s.login)
	s.mux.Handle("GET /debug/pool", s.requireAuth(p.DebugHandler()))
	for _, k := range kinds {
		s.mux.Handle("GET /"+k.name+"/all", s.requireAuth(s.list(k)))
		s.mux.Handle("GET /"+k.name+"/{id}", s.requireAuth(s.get(k)))
		s.mux.Handle("GET /"+k.name+"/{id}/image", s.requireAuth(s.image(k)))
		s.mux.Handle("POST /"+k.name+"/process", s.requireAuth(s.process(k)))
	}
	return s
}

// ServeHTTP routes the request, answering unknown paths (404) and methods (405) in JSON too.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, pattern := s.mux.Handler(r); pattern == "" {
		rec := &statusRecorder{header: w.Header()}
		h.ServeHTTP(rec, r) // the mux's own 404, 405 or redirect: keep its status and headers
		if rec.status >= 400 {
			writeError(w, rec.status, http.StatusText(rec.status))
			return
		}
		w.WriteHeader(rec.status)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// statusRecorder keeps the headers and status of a response and drops its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

// healthz answers 200 while the process is up.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when the pool reaches the database within readyTimeout, 503 otherwise.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		s.log.Warn("docapi: not ready", "err", err)
		writeError(w, http.StatusServiceUnavailable, "database unreachable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// list handles GET /{kind}/all?limit=&after=: newest first, without the image bytes.
// The answer is {"items": [...], "next_after": id}, next_after present when more follow:
// pass it as after= to get the next page.
func (s *server) list(k *kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		limit, after := defaultLimit, int64(0)
		q := r.URL.Query()
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxLimit {
				writeError(w, http.StatusBadRequest, "limit must be a whole number from 1 to "+strconv.Itoa(maxLimit))
				return
			}
			limit = n
		}
		if v := q.Get("after"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				writeError(w, http.StatusBadRequest, "after must be the id of a document")
				return
			}
			after = n
		}
		docs, more, err := s.store.list(r.Context(), k, after, limit)
		if err != nil {
			s.serverError(w, r, err)
			return
		}
		resp := map[string]any{"items": docs}
		if more {
			resp["next_after"] = docs[len(docs)-1].ID
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// get handles GET /{kind}/{id}.
func (s *server) get(k *kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		d, err := s.store.get(r.Context(), k, id)
		if err != nil {
			s.readError(w, r, k, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	}
}

// image handles GET /{kind}/{id}/image: the stored bytes with their content type.
func (s *server) image(k *kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		contentType, data, err := s.store.image(r.Context(), k, id)
		if err != nil {
			s.readError(w, r, k, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", strconv.Itoa(len(data)))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "private, max-age=3600")
		w.WriteHeader(http.StatusOK)
		w.Write(data)
	}
}

// pathID reads the {id} path value, answering 400 when it is not a document id.
func pathID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, "the id must be a positive whole number")
		return 0, false
	}
	return id, true
}

func (s *server) readError(w http.ResponseWriter, r *http.Request, k *kind, err error) {
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, "no such "+k.name+" document")
		return
	}
	s.serverError(w, r, err)
}

// serverError answers a failure of the database or of the server itself: 503 with
// Retry-After when trying again later may work (the pool gave up on a transient fault, or no
// connection was free in time), 500 otherwise. The details go to the log, not to the client.
func (s *server) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		// The client has gone: nobody reads the answer, and this is no server failure.
		s.log.Debug("docapi: client gone", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "request canceled")
		return
	}
	var retryErr *retry.Error
	transient := errors.Is(err, pool.ErrPoolTimeout) || errors.Is(err, pool.ErrClosed) ||
		errors.Is(err, errCommitUnknown) || errors.As(err, &retryErr) ||
		retry.Classify(err) != retry.Permanent
	s.log.Error("docapi: request failed", "method", r.Method, "path", r.URL.Path, "transient", transient, "err", err)
	if transient {
		w.Header().Set("Retry-After", "1")
		msg := "database unavailable, retry later"
		if errors.Is(err, errCommitUnknown) {
			msg = errCommitUnknown.Error()
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	writeError(w, http.StatusInternalServerError, "internal error")
}

// decodeJSON reads a small JSON request body into v, answering 400 (or 413) when it cannot.
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("one JSON object expected")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large")
			return false
		}
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
