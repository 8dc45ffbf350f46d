// Package pgfake is a fake PostgreSQL server for unit tests of the pool's logic without
// Docker. It speaks the wire protocol (pgx's pgproto3) over in-memory connections (net.Pipe,
// so tests can run inside testing/synctest with fake time), or over a Unix socket pair for a
// test that needs a real descriptor ([Server.DialSocket]), and answers each statement as the
// test scripts it: rows, an error with a SQLSTATE, a FATAL error, a connection dropped with
// the statement in flight, or a black hole that reads and never answers.
//
// It is not a database: it runs no SQL, keeps no data, checks no password, and it knows only
// what a test tells it. A test on it proves what the pool does with a given answer, never that
// PostgreSQL gives that answer: the integration suite in internal/testkit/itest, against a real
// PostgreSQL and real faults, stays the judge of real behaviour.
//
// Supported: trust authentication, ParameterStatus at startup (in_hot_standby and
// default_transaction_read_only included), the simple protocol, and the extended protocol as
// pgx's QueryExecModeExec uses it (unnamed statements described as portals, text or binary
// results). A named prepared statement's description (pgx's default cache modes) is refused
// with an error: give the pool's connection string default_query_exec_mode=exec.
package pgfake

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// Query is one statement the server received.
type Query struct {
	Conn int      // the connection it came on: 1 for the first the server accepted, and so on
	SQL  string   // as sent (the simple protocol carries arguments inside it)
	Args []string // the extended protocol's parameters as sent (text, as pgx's exec mode sends them)
}

// Handler answers a statement. It runs on the connection's goroutine, one statement at a
// time per connection, and concurrently across connections. In the extended protocol it runs
// once per statement, when the statement is described (its columns come from the answer).
type Handler func(Query) Reply

// Server is a fake PostgreSQL server. Its methods are safe for concurrent use.
type Server struct {
	mu      sync.Mutex
	handler Handler
	params  map[string]string
	refuse  *Error // non-nil: new connections get this FATAL error at startup
	down    bool   // new connections are refused before startup (connection refused)
	closed  bool
	n       int // connections accepted
	conns   map[int]*conn
	seen    []Query
	wg      sync.WaitGroup
}

// DefaultParams are the run-time parameters the server reports at startup unless
// [Server.SetParam] changes them: those of a PostgreSQL 16 primary.
var DefaultParams = map[string]string{
	"server_version":                "16.4",
	"server_encoding":               "UTF8",
	"client_encoding":               "UTF8",
	"DateStyle":                     "ISO, MDY",
	"integer_datetimes":             "on",
	"standard_conforming_strings":   "on",
	"TimeZone":                      "UTC",
	"in_hot_standby":                "off",
	"default_transaction_read_only": "off",
}

// New returns a server that answers with h (nil: [Default] for everything).
func New(h Handler) *Server {
	s := &Server{handler: h, params: map[string]string{}, conns: map[int]*conn{}}
	for k, v := range DefaultParams {
		s.params[k] = v
	}
	return s
}

// DSN is a connection string for the server: pgx needs a host, and [Server.Dial] ignores it.
const DSN = "postgres://app@127.0.0.1:5432/app?sslmode=disable&default_query_exec_mode=exec"

// Handle replaces the handler for the statements that arrive from now on.
func (s *Server) Handle(h Handler) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

// SetParam sets a run-time parameter that new connections are told at startup; an empty
// value leaves it out (a server older than the parameter).
func (s *Server) SetParam(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if value == "" {
		delete(s.params, name)
		return
	}
	s.params[name] = value
}

// Refuse makes new connections fail at startup with e (FATAL), as a server that is starting
// up (57P03) or has too many clients (53300) does; nil accepts them again.
func (s *Server) Refuse(e *Error) {
	s.mu.Lock()
	s.refuse = e
	s.mu.Unlock()
}

// Down makes [Server.Dial] fail with connection refused (down true), as a server that is not
// running does, or accept again (false).
func (s *Server) Down(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// Kill closes connection n without a word, as a dropped flow with a reset does; the client
// sees it at its next read or write.
func (s *Server) Kill(n int) {
	s.mu.Lock()
	c := s.conns[n]
	s.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// Accepted is how many connections the server has accepted.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Open is how many connections are open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Seen returns the statements received so far that match accepts (nil: all), in order of
// arrival.
func (s *Server) Seen(match func(Query) bool) []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Query
	for _, q := range s.seen {
		if match == nil || match(q) {
			out = append(out, q)
		}
	}
	return out
}

// Dial connects to the server in memory; use it as pgconn's DialFunc (network and addr are
// ignored). It fails with connection refused while the server is down or closed.
func (s *Server) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	return s.accept(client, server)
}

// accept serves server, the server's end of a new connection, and returns client, its other
// end; while the server is down or closed it closes both and refuses.
func (s *Server) accept(client, server net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down || s.closed {
		client.Close()
		server.Close()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	s.n++
	c := &conn{s: s, id: s.n, nc: server}
	s.conns[c.id] = c
	s.wg.Go(c.serve)
	return client, nil
}

// Close closes every connection and waits for their goroutines to end; later dials are
// refused.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// received records q and returns the handler to answer it.
func (s *Server) received(q Query) Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, q)
	return s.handler
}

// startup returns the parameters to report and the error to refuse with, if any.
func (s *Server) startup() (map[string]string, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	params := make(map[string]string, len(s.params))
	for k, v := range s.params {
		params[k] = v
	}
	return params, s.refuse
}

func (s *Server) gone(c *conn) {
	s.mu.Lock()
	delete(s.conns, c.id)
	s.mu.Unlock()
}

// errNoScript is the answer to a statement no handler and no default answers.
var errNoScript = errors.New("pgfake: no answer scripted for this statement")
