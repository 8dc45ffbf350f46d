package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pgsteady/pgsteady/pool"
	"github.com/pgsteady/pgsteady/retry"
)

const (
	defaultLimit = 50
	maxLimit     = 200
	// maxJSONBody bounds the login request.
	maxJSONBody = 64 << 10
	// readyTimeout bounds the database check of GET /readyz: below the 1 s a Kubernetes probe
	// waits by default.
	readyTimeout = 800 * time.Millisecond
)

// server is docapi's HTTP API on a pgsteady cluster (a primary and its read replicas, or the
// primary alone).
type server struct {
	db      *pool.Cluster
	store   *store
	log     *slog.Logger
	mux     *http.ServeMux
	handler http.Handler     // mux behind the access log
	today   func() time.Time // for date validation
	metrics *metrics

	tokenTTL       time.Duration
	trustedProxies []netip.Prefix
	emailFailures  *throttle
	addrFailures   *throttle
	known          *knownClients
	emailTurns     *turns
	bcrypt         *fairQueue
	checks         *flights
	streams        *streams // image responses in flight

	opsApart     bool // /metrics and /debug/pool on opsHandler's listener, not here
	readyBudget  time.Duration
	failingSince atomic.Int64 // unix nanoseconds of the first failed readiness check in a row; 0: none
}

// newServer returns docapi's handler. The schema must be in place (see migrate).
// /metrics and /debug/pool are for admins, or, with withOpsApart, on opsHandler only.
func newServer(c *pool.Cluster, logger *slog.Logger, opts ...serverOption) *server {
	s := &server{
		db:            c,
		store:         newStore(c, logger),
		log:           logger,
		mux:           http.NewServeMux(),
		today:         func() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) },
		metrics:       newMetrics(),
		tokenTTL:      defaultTokenTTL,
		emailFailures: newThrottle(emailFailureLimit, loginDelay, emailMaxDelay),
		addrFailures:  newThrottle(addrFailureLimit, loginDelay, addrMaxDelay),
		known:         newKnownClients(),
		emailTurns:    newTurns(),
		bcrypt:        newFairQueue(bcryptSlots, bcryptMaxWaiting, bcryptWaitingPerAddr),
		checks:        newFlights(),
		streams:       newStreams(maxImageStreams, maxImageStreamsPerAddr),
		readyBudget:   c.Primary().Config().Retry.MaxElapsed,
	}
	if s.readyBudget <= 0 {
		s.readyBudget = retry.DefaultMaxElapsed
	}
	for _, opt := range opts {
		opt(s)
	}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if !s.opsApart {
		s.mux.Handle("GET /metrics", s.requireAuth(requireAdmin(http.HandlerFunc(s.metricsHandler))))
		s.mux.Handle("GET /debug/pool", s.requireAuth(requireAdmin(c.DebugHandler())))
	}
	s.mux.HandleFunc("POST /auth/login", s.login)
	s.mux.Handle("POST /auth/logout", s.requireAuth(http.HandlerFunc(s.logout)))
	for _, k := range kinds {
		s.mux.Handle("GET /"+k.name+"/all", s.requireAuth(s.list(k)))
		s.mux.Handle("GET /"+k.name+"/{id}", s.requireAuth(s.get(k)))
		s.mux.Handle("GET /"+k.name+"/{id}/image", s.requireAuth(s.image(k)))
		s.mux.Handle("POST /"+k.name+"/process", s.requireAuth(s.process(k)))
	}
	s.handler = s.logged(http.HandlerFunc(s.route))
	return s
}

// opsHandler serves /metrics, /debug/pool and /healthz without a token, for a listener of
// their own (DOCAPI_OPS_ADDR), reached by scrapers and operators only.
func (s *server) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.metricsHandler)
	mux.Handle("GET /debug/pool", s.db.DebugHandler())
	mux.HandleFunc("GET /healthz", s.healthz)
	return mux
}

// requireAdmin lets through, after requireAuth, only an admin's request, and answers 403
// otherwise.
func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !caller(r.Context()).admin {
			writeError(w, http.StatusForbidden, "admins only")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves the request and writes its access-log line.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// route routes the request, answering unknown paths (404) and methods (405) in JSON too.
func (s *server) route(w http.ResponseWriter, r *http.Request) {
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

// readyz answers whether docapi can serve: 200 while the pool reaches the database, and
// also while it has failed to for less than the ready budget (by default the pool's retry
// budget, cfg.Retry.MaxElapsed), because a request arriving then is still retried until the
// database is back: a killed backend or a restart of a few seconds does not take the instance
// out of its load balancer. Once the database has failed every check for longer than that,
// 503, until one check succeeds.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	err := s.db.Primary().Ping(ctx)
	if err == nil {
		s.failingSince.Store(0)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	now := time.Now()
	s.failingSince.CompareAndSwap(0, now.UnixNano())
	failing := now.Sub(time.Unix(0, s.failingSince.Load()))
	if failing < s.readyBudget {
		s.log.Info("docapi: database check failed, still within the ready budget", "failing", failing.Round(time.Millisecond), "budget", s.readyBudget, "err", err)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "database": "retrying"})
		return
	}
	s.log.Warn("docapi: not ready", "failing", failing.Round(time.Millisecond), "budget", s.readyBudget, "err", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "database unreachable for "+failing.Round(time.Second).String())
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
		docs, more, err := s.store.list(r.Context(), k, caller(r.Context()).viewer, after, limit)
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
		d, err := s.store.get(r.Context(), k, caller(r.Context()).viewer, id)
		if err != nil {
			s.readError(w, r, k, err)
			return
		}
		writeJSON(w, http.StatusOK, d)
	}
}

// inlineImageTypes are the stored types a browser may show inline: plain raster images, which
// run no script. Anything else (a PDF) is served as a download.
var inlineImageTypes = []string{"image/jpeg", "image/png"}

// image handles GET /{kind}/{id}/image: the stored bytes with their content type, sent in
// chunks (see imagestream.go; 503 with Retry-After when too many are being sent). Only JPEG
// and PNG are served inline; a PDF, or any type docapi did not expect in its table, is an
// attachment, and an unexpected type is sent as application/octet-stream. Every answer carries
// Content-Security-Policy: sandbox (no script, no plugin, an opaque origin, should a browser
// render it anyway) and X-Content-Type-Options: nosniff.
func (s *server) image(k *kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := pathID(w, r)
		if !ok {
			return
		}
		contentType, size, err := s.store.image(r.Context(), k, caller(r.Context()).viewer, id)
		if err != nil {
			s.readError(w, r, k, err)
			return
		}
		addr := s.clientAddr(r)
		if !s.streams.acquire(addr) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "too many images being sent, retry later")
			return
		}
		defer s.streams.release(addr)
		disposition := "inline"
		if !slices.Contains(inlineImageTypes, contentType) {
			disposition = "attachment"
			if !slices.Contains(allowedImageTypes, contentType) {
				contentType = "application/octet-stream"
			}
		}
		ext := map[string]string{"image/jpeg": ".jpg", "image/png": ".png", "application/pdf": ".pdf"}[contentType]
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Length", strconv.Itoa(size))
		h.Set("Content-Disposition", fmt.Sprintf(`%s; filename="%s-%d%s"`, disposition, k.name, id, ext))
		h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Cache-Control", "private, max-age=3600")
		s.sendImage(r.Context(), w, r, k, id, size)
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
		s.log.Debug("docapi: client gone", "request_id", requestID(r.Context()), "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusServiceUnavailable, "request canceled")
		return
	}
	transient := errors.Is(err, errCommitUnknown) || retry.MayRetryLater(err)
	s.log.Error("docapi: request failed", "request_id", requestID(r.Context()), "method", r.Method, "path", r.URL.Path, "transient", transient, "err", err)
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

// decodeJSON reads a small JSON object into v, answering 400 (or 413) when it cannot, in the
// API's words rather than the decoder's. keys are v's JSON keys, for the messages.
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, keys ...string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errTrailingData
	}
	if err == nil {
		return true
	}
	expected := `a JSON object with the keys "` + strings.Join(keys, `", "`) + `"`
	var (
		tooBig    *http.MaxBytesError
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
		msg       string
	)
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "request body larger than "+strconv.Itoa(maxJSONBody)+" bytes")
		return false
	case errors.Is(err, io.EOF):
		msg = "the body is empty: send " + expected
	case errors.Is(err, errTrailingData):
		msg = "the body must hold one JSON object and nothing after it"
	case errors.As(err, &typeErr) && typeErr.Field != "":
		msg = strconv.Quote(typeErr.Field) + " must be a JSON " + jsonKind(typeErr.Type)
	case errors.As(err, &typeErr):
		msg = "the body must be " + expected
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for an unknown field, only this text.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		msg = "unknown key " + field + ": send " + expected
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		msg = "the body is not valid JSON: send " + expected
	default:
		msg = "the body could not be read: send " + expected
	}
	writeError(w, http.StatusBadRequest, msg)
	return false
}

// errTrailingData is decodeJSON's error for a body with more after its JSON object.
var errTrailingData = errors.New("data after the JSON object")

// jsonKind names the JSON type that a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
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
