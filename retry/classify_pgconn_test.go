package retry_test

// Errors exactly as pgconn builds them (unexported types, wrapping, joins),
// produced by pgconn itself talking to a scripted peer on 127.0.0.1. The
// peer only plays the protocol steps needed to provoke each error; it does
// not stand in for PostgreSQL's behaviour, which classify_integration_test.go
// tests against a real server. Provider answers (Neon) can only be had this
// way.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/retry"
)

// peer listens on 127.0.0.1 and runs handle for each connection, closing it
// afterwards. It returns the address.
func peer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// rejectStartup answers the startup message with a FATAL error.
func rejectStartup(code, msg string) func(net.Conn) {
	return func(c net.Conn) {
		b := pgproto3.NewBackend(c, c)
		if _, err := b.ReceiveStartupMessage(); err != nil {
			return
		}
		b.Send(&pgproto3.ErrorResponse{Severity: "FATAL", Code: code, Message: msg})
		_ = b.Flush()
	}
}

// acceptStartup completes the startup without authentication, then hands
// the session to then.
func acceptStartup(then func(*pgproto3.Backend)) func(net.Conn) {
	return func(c net.Conn) {
		b := pgproto3.NewBackend(c, c)
		if _, err := b.ReceiveStartupMessage(); err != nil {
			return
		}
		b.Send(&pgproto3.AuthenticationOk{})
		b.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		if err := b.Flush(); err != nil {
			return
		}
		then(b)
	}
}

// answerQuery reads one query, answers it with msgs, and waits for the
// client to close.
func answerQuery(msgs ...pgproto3.BackendMessage) func(*pgproto3.Backend) {
	return func(b *pgproto3.Backend) {
		if _, err := b.Receive(); err != nil {
			return
		}
		for _, m := range msgs {
			b.Send(m)
		}
		_ = b.Flush()
		_, _ = b.Receive() // wait for the client to go away
	}
}

func connect(ctx context.Context, t *testing.T, addr, sslmode string) (*pgconn.PgConn, error) {
	t.Helper()
	cfg, err := pgconn.ParseConfig("postgres://app:secret@" + addr + "/docs?sslmode=" + sslmode)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnectTimeout = 200 * time.Millisecond
	return pgconn.ConnectConfig(ctx, cfg)
}

func TestClassifyPgconnConnectErrors(t *testing.T) {
	t.Parallel()
	silent := func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }
	refused := func(t *testing.T) string { return testhelp.RefusedAddr(t) }
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		cancel  bool // connect with a canceled context
		sslmode string
		want    retry.Class
	}{
		{"refused", refused, false, "disable", retry.NotSent},
		{"canceled by the caller", refused, true, "disable", retry.NotSent},
		{"connect timeout, server silent", func(t *testing.T) string { return peer(t, silent) }, false, "disable", retry.NotSent},
		{"closed during startup", func(t *testing.T) string { return peer(t, func(net.Conn) {}) }, false, "disable", retry.NotSent},
		{"28P01 wrong password", rejectingPeer("28P01", `password authentication failed for user "app"`), false, "disable", retry.Permanent},
		{"3D000 unknown database", rejectingPeer("3D000", `database "docs" does not exist`), false, "disable", retry.Permanent},
		{"42501 no connect privilege", rejectingPeer("42501", `permission denied for database "docs"`), false, "disable", retry.Permanent},
		{"57P03 starting up", rejectingPeer("57P03", "the database system is starting up"), false, "disable", retry.NotSent},
		{"53300 too many clients", rejectingPeer("53300", "sorry, too many clients already"), false, "disable", retry.NotSent},
		{"57P01 shut down during startup", rejectingPeer("57P01", "terminating connection due to administrator command"), false, "disable", retry.NotSent},
		{"08P01 PgBouncer full", rejectingPeer("08P01", "no more connections allowed (max_client_conn)"), false, "disable", retry.NotSent},
		{"Neon compute waking", rejectingPeer("XX000", "Couldn't connect to compute node"), false, "disable", retry.NotSent},
		{"Neon endpoint disabled", rejectingPeer("XX000", "Control plane request failed: endpoint is disabled"), false, "disable", retry.Permanent},
		{"server refuses TLS", func(t *testing.T) string { return peer(t, refuseTLS) }, false, "require", retry.Permanent},
		{"untrusted certificate", func(t *testing.T) string { return peer(t, offerTLS(selfSigned(t))) }, false, "verify-full", retry.Permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			if tt.cancel {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			conn, err := connect(ctx, t, tt.addr(t), tt.sslmode)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connect succeeded")
			}
			var cerr *pgconn.ConnectError
			if !errors.As(err, &cerr) {
				t.Fatalf("connect error %T is not a *pgconn.ConnectError: %v", err, err)
			}
			testhelp.CheckClass(t, err, tt.want)
		})
	}
}

func rejectingPeer(code, msg string) func(t *testing.T) string {
	return func(t *testing.T) string { return peer(t, rejectStartup(code, msg)) }
}

func TestClassifyPgconnSessionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		session func(*pgproto3.Backend)
		prepare func(ctx context.Context, c *pgconn.PgConn) context.Context
		want    retry.Class
	}{
		{
			name:    "server closes with the query in flight",
			session: func(b *pgproto3.Backend) { _, _ = b.Receive() },
			want:    retry.ConnLost,
		},
		{
			name:    "server closed before the query was sent",
			session: func(*pgproto3.Backend) {},
			prepare: func(ctx context.Context, c *pgconn.PgConn) context.Context {
				// Let the close arrive first; pgconn still writes the query
				// into the socket, so it cannot know it was not received.
				time.Sleep(50 * time.Millisecond)
				return ctx
			},
			want: retry.ConnLost,
		},
		{
			name: "FATAL 57P01 instead of a result",
			session: answerQuery(&pgproto3.ErrorResponse{
				Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command",
			}),
			want: retry.ConnLost,
		},
		{
			name: "serialization failure",
			session: answerQuery(
				&pgproto3.ErrorResponse{Severity: "ERROR", Code: "40001", Message: "could not serialize access due to concurrent update"},
				&pgproto3.ReadyForQuery{TxStatus: 'E'},
			),
			want: retry.Conflict,
		},
		{
			name:    "connection already closed by the client",
			session: func(b *pgproto3.Backend) { _, _ = b.Receive() },
			prepare: func(ctx context.Context, c *pgconn.PgConn) context.Context {
				c.Close(ctx)
				return ctx
			},
			want: retry.NotSent,
		},
		{
			name:    "context done before the query",
			session: func(b *pgproto3.Backend) { _, _ = b.Receive() },
			prepare: func(ctx context.Context, c *pgconn.PgConn) context.Context {
				ctx, cancel := context.WithCancel(ctx)
				cancel()
				return ctx
			},
			want: retry.Permanent,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			conn, err := connect(ctx, t, peer(t, acceptStartup(tt.session)), "disable")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			qctx := ctx
			if tt.prepare != nil {
				qctx = tt.prepare(ctx, conn)
			}
			_, err = conn.Exec(qctx, "SELECT 1").ReadAll()
			if err == nil {
				t.Fatal("query succeeded")
			}
			testhelp.CheckClass(t, err, tt.want)
		})
	}
}

// refuseTLS answers an SSLRequest with 'N'.
func refuseTLS(c net.Conn) {
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return
	}
	_, _ = c.Write([]byte{'N'})
}

// offerTLS accepts an SSLRequest and runs a TLS handshake with cert.
func offerTLS(cert tls.Certificate) func(net.Conn) {
	return func(c net.Conn) {
		var req [8]byte
		if _, err := io.ReadFull(c, req[:]); err != nil || binary.BigEndian.Uint32(req[4:]) != 80877103 {
			return
		}
		if _, err := c.Write([]byte{'S'}); err != nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		_ = tc.Handshake()
	}
}

// selfSigned returns a certificate for 127.0.0.1 that no root trusts.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
