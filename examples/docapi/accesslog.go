package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsteady/pgsteady/pool"
)

// maxRequestID is the longest X-Request-Id taken from a client or proxy; a longer or
// non-printable one is replaced.
const maxRequestID = 64

// reqInfo is what the access log records about a request beyond the request line and status.
// Handlers fill it in through the request's context.
type reqInfo struct {
	id         string
	userID     atomic.Int64
	retries    atomic.Int64 // retries the pool made for this request (requestObserver), and uploads run again
	dbFailures atomic.Int64 // statements and acquires that failed (requestTracer)
}

type reqInfoKey struct{}

func requestInfo(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqInfoKey{}).(*reqInfo)
	return ri
}

// requestID returns the id of the request ctx belongs to, or "".
func requestID(ctx context.Context) string {
	if ri := requestInfo(ctx); ri != nil {
		return ri.id
	}
	return ""
}

// countRetry records that a call of this request was run again: by the pool (every retry it
// makes reaches requestObserver with the request's context), or by store.create after an
// ambiguous commit.
func countRetry(ctx context.Context) {
	if ri := requestInfo(ctx); ri != nil {
		ri.retries.Add(1)
	}
}

// setUser records the authenticated user for the access log.
func setUser(ctx context.Context, id int64) {
	if ri := requestInfo(ctx); ri != nil {
		ri.userID.Store(id)
	}
}

// newRequestID returns the X-Request-Id the request came with when a trusted proxy sent it
// and it is sane, or a random one (a client could otherwise write what it likes in the logs).
func (s *server) newRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && s.fromTrustedProxy(r) && len(id) <= maxRequestID &&
		!strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c > '~' }) {
		return id
	}
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// loggingWriter keeps the status and size of a response for the access log.
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *loggingWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *loggingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logged serves the request through next and writes one access-log line (Info) for it: request
// id (also sent back as X-Request-Id), method, path, status, bytes, duration, client address,
// user (0 before authentication), the retries counted by countRetry and the failed database
// attempts counted by requestTracer.
func (s *server) logged(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{id: s.newRequestID(r)}
		w.Header().Set("X-Request-Id", ri.id)
		lw := &loggingWriter{ResponseWriter: w}
		next.ServeHTTP(lw, r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri)))
		if lw.status == 0 {
			lw.status = http.StatusOK
		}
		elapsed := time.Since(start)
		s.metrics.request(lw.status)
		s.log.Info("docapi: request",
			"request_id", ri.id,
			"method", r.Method,
			"path", r.URL.Path,
			"status", lw.status,
			"bytes", lw.bytes,
			"duration_ms", float64(elapsed.Microseconds())/1000,
			"client", s.clientAddr(r),
			"user", ri.userID.Load(),
			"retries", ri.retries.Load(),
			"db_failures", ri.dbFailures.Load(),
		)
	})
}

// requestTracer is a pgx tracer (installed with pool.WithPgxConfig) that counts, per request,
// the statements and connection acquisitions that failed: the attempts the pool then retried,
// and, when the request failed on the database, its final error. It finds the request through
// the context that the pool passes down to pgx.
type requestTracer struct{}

// TraceQueryStart implements pgx.QueryTracer.
func (requestTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (requestTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err != nil {
		countDBFailure(ctx)
	}
}

// TraceAcquireStart implements pgxpool.AcquireTracer.
func (requestTracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return ctx
}

// TraceAcquireEnd implements pgxpool.AcquireTracer.
func (requestTracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if data.Err != nil {
		countDBFailure(ctx)
	}
}

func countDBFailure(ctx context.Context) {
	if ri := requestInfo(ctx); ri != nil {
		ri.dbFailures.Add(1)
	}
}

// traceRequests is the pool option that installs requestTracer, unless a tracer is set.
func traceRequests() pool.Option {
	return pool.WithPgxConfig(func(c *pgxpool.Config) {
		if c.ConnConfig.Tracer == nil {
			c.ConnConfig.Tracer = requestTracer{}
		}
	})
}

// requestObserver is the pool's Observer for the access log: it counts each retry the pool
// makes against the request whose context the call carried.
type requestObserver struct{ pool.BaseObserver }

// Retrying implements pool.RetryObserver.
func (requestObserver) Retrying(ctx context.Context, _ pool.RetryEvent) { countRetry(ctx) }
