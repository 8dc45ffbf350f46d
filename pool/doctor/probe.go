package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// This file probes the path by hand, below pgx: DNS, TCP, the TLS handshake and the first
// message of authentication, which lists the methods the server offers. The probe then hangs
// up without answering; PostgreSQL ends such a session silently (a client that leaves during
// authentication, as psql does when it asks for a password, is not logged as an error).

// sslRequestCode is the SSLRequest message's code (PostgreSQL protocol, "SSLRequest").
const sslRequestCode = 80877103

// probePath fills d.r.Path for the first host of pc and reports whether the server answered
// the probe, so that opening a session is worth trying.
func probePath(ctx context.Context, pc *pgconn.Config, sslmode string, d *diagnosis) bool {
	p := &d.r.Path
	p.Host, p.Port = pc.Host, pc.Port
	if e, ok := providerOf(pc.Host, pc.Port); ok {
		p.Provider = e.name
		text := e.name
		if e.note != "" {
			text += ": " + e.note
		}
		d.add(IDProvider, OK, text)
		if e.readOnly {
			d.advise(IDProvider, "host", "the cluster (writer) endpoint, for a service that writes",
				"a reader endpoint answers every write with 25006")
		}
	}
	if strings.HasPrefix(pc.Host, "/") {
		p.Addr = pc.Host
		conn, ok := dialProbe(ctx, "unix", hostPort(pc.Host, pc.Port), pc, d)
		if !ok {
			return false
		}
		defer conn.Close()
		return authProbe(ctx, conn, pc, d)
	}
	addrs, ok := resolve(ctx, pc, d)
	if !ok {
		return false
	}
	var conn net.Conn
	for _, a := range addrs {
		if conn, ok = dialProbe(ctx, "tcp", a, pc, d); ok {
			break
		}
	}
	if conn == nil {
		return false
	}
	defer func() { conn.Close() }()
	if sslmode != "disable" {
		var tlsOK bool
		if conn, tlsOK = tlsProbe(ctx, conn, pc, sslmode, d); !tlsOK {
			return false
		}
	}
	return authProbe(ctx, conn, pc, d)
}

// resolve looks the host up with the LookupFunc pgx would use and returns the addresses to
// dial, as host:port.
func resolve(ctx context.Context, pc *pgconn.Config, d *diagnosis) ([]string, bool) {
	p := &d.r.Path
	port := strconv.Itoa(int(pc.Port))
	if net.ParseIP(pc.Host) != nil {
		p.Addrs = []string{pc.Host}
		d.add(IDDNS, OK, pc.Host+" is an address: nothing to look up")
		return []string{net.JoinHostPort(pc.Host, port)}, true
	}
	start := time.Now()
	answers, err := pc.LookupFunc(ctx, pc.Host)
	p.DNSTime = time.Since(start)
	if err == nil && len(answers) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			d.add(IDDNS, Fail, fmt.Sprintf("%s does not resolve (no such host): check the host name", pc.Host))
		} else {
			d.add(IDDNS, Fail, fmt.Sprintf("%s could not be resolved: %v", pc.Host, err))
		}
		return nil, false
	}
	var addrs []string
	for _, a := range answers {
		// pgconn accepts an answer that carries its own port (host:port); keep it.
		if _, _, err := net.SplitHostPort(a); err == nil {
			addrs = append(addrs, a)
		} else {
			addrs = append(addrs, net.JoinHostPort(a, port))
		}
	}
	p.Addrs = answers
	d.add(IDDNS, OK, fmt.Sprintf("%s resolves to %s", pc.Host, strings.Join(answers, ", ")))
	return addrs, true
}

// dialProbe opens a connection to addr within the config's connect timeout.
func dialProbe(ctx context.Context, network, addr string, pc *pgconn.Config, d *diagnosis) (net.Conn, bool) {
	ctx, cancel := context.WithTimeout(ctx, pc.ConnectTimeout)
	defer cancel()
	start := time.Now()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	took := time.Since(start)
	if err != nil {
		text := fmt.Sprintf("no connection to %s: %v", addr, err)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			text = fmt.Sprintf("no answer from %s within %s: a firewall or a wrong address drops the packets", addr, pc.ConnectTimeout)
		} else if isRefused(err) {
			text = fmt.Sprintf("%s refused the connection: nothing listens on that port (wrong port, or the server is down)", addr)
		}
		d.add(IDTCP, Fail, text)
		return nil, false
	}
	d.r.Path.Addr, d.r.Path.ConnectTime = addr, took
	d.add(IDTCP, OK, fmt.Sprintf("connected to %s in %s", addr, ms(took)))
	return conn, true
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// tlsProbe asks for TLS, completes a handshake that accepts any certificate, and judges the
// certificate as verify-full and verify-ca would.
func tlsProbe(ctx context.Context, conn net.Conn, pc *pgconn.Config, sslmode string, d *diagnosis) (net.Conn, bool) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], sslRequestCode)
	var answer [1]byte
	if _, err := conn.Write(req[:]); err != nil {
		d.add(IDTLS, Fail, "the server closed the connection on the TLS request: "+err.Error())
		return conn, false
	}
	if _, err := io.ReadFull(conn, answer[:]); err != nil {
		d.add(IDTLS, Fail, "no answer to the TLS request (not a PostgreSQL server?): "+err.Error())
		return conn, false
	}
	switch answer[0] {
	case 'S':
	case 'N':
		lvl := Fail
		if sslmode == "prefer" || sslmode == "allow" {
			lvl = Warn
		}
		d.add(IDTLS, lvl, "the server does not offer TLS (ssl = off)")
		return conn, lvl != Fail
	default:
		d.add(IDTLS, Fail, fmt.Sprintf("unexpected answer %q to the TLS request: not a PostgreSQL server?", answer[0]))
		return conn, false
	}
	tc := &tls.Config{}
	if pc.TLSConfig != nil {
		tc = pc.TLSConfig.Clone()
	}
	tc.InsecureSkipVerify, tc.VerifyPeerCertificate = true, nil
	if tc.ServerName == "" && net.ParseIP(pc.Host) == nil {
		tc.ServerName = pc.Host
	}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		d.add(IDTLS, Fail, "TLS handshake failed: "+err.Error())
		return conn, false
	}
	st := tconn.ConnectionState()
	info := &TLSInfo{Version: tls.VersionName(st.Version), Cipher: tls.CipherSuiteName(st.CipherSuite)}
	d.r.Path.TLS = info
	lvl := OK
	text := info.Version
	if st.Version < tls.VersionTLS12 {
		lvl, text = Warn, info.Version+": older than TLS 1.2"
	}
	d.add(IDTLS, lvl, text+", "+info.Cipher)
	if len(st.PeerCertificates) == 0 {
		info.VerifyFull, info.VerifyCA = "no certificate", "no certificate"
	} else {
		leaf := st.PeerCertificates[0]
		info.Subject, info.Issuer, info.NotAfter = leaf.Subject.String(), leaf.Issuer.String(), leaf.NotAfter
		roots := pcRoots(pc)
		info.VerifyFull = verifyText(verifyChain(st.PeerCertificates, roots, pc.Host))
		info.VerifyCA = verifyText(verifyChain(st.PeerCertificates, roots, ""))
	}
	judgeVerify(info, sslmode, pc, d)
	return tconn, true
}

// pcRoots returns the roots verification uses: sslrootcert's, or nil for the system's.
func pcRoots(pc *pgconn.Config) *x509.CertPool {
	if pc.TLSConfig != nil {
		return pc.TLSConfig.RootCAs
	}
	return nil
}

// verifyChain checks certs against roots (nil: the system's), and the host name unless host is "".
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, host string) error {
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), DNSName: host}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err
}

func verifyText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// judgeVerify turns the verification results into the verify-full finding.
func judgeVerify(info *TLSInfo, sslmode string, pc *pgconn.Config, d *diagnosis) {
	roots := "the system's roots"
	if pcRoots(pc) != nil {
		roots = "sslrootcert"
	}
	switch {
	case info.VerifyFull == "":
		d.add(IDVerifyFull, OK, "verify-full would accept the certificate (against "+roots+")")
	case sslmode == "verify-full":
		d.add(IDVerifyFull, Fail, "verify-full, the sslmode in use, rejects the certificate: "+info.VerifyFull)
		d.advise(IDVerifyFull, "sslrootcert", "the CA file that signed the server's certificate (issuer: "+info.Issuer+")",
			"every connection fails certificate verification")
	case sslmode == "verify-ca" && info.VerifyCA != "":
		d.add(IDVerifyFull, Fail, "verify-ca, the sslmode in use, rejects the certificate: "+info.VerifyCA)
		d.advise(IDVerifyFull, "sslrootcert", "the CA file that signed the server's certificate (issuer: "+info.Issuer+")",
			"every connection fails certificate verification")
	case isLocal(pc.Host):
		d.add(IDVerifyFull, OK, "verify-full would reject the certificate (against "+roots+"), which matters little on a local connection: "+info.VerifyFull)
	default:
		d.add(IDVerifyFull, Warn, "verify-full would reject the certificate (against "+roots+"): "+info.VerifyFull)
	}
}

// authProbe sends the startup message and reads the server's first answer: the authentication
// methods it offers this user, or its refusal.
func authProbe(ctx context.Context, conn net.Conn, pc *pgconn.Config, d *diagnosis) bool {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": pc.User, "database": pc.Database}})
	if err := fe.Flush(); err != nil {
		d.add(IDAuth, Fail, "the server closed the connection at startup: "+err.Error())
		return false
	}
	msg, err := fe.Receive()
	if err != nil {
		d.add(IDAuth, Fail, "no answer to the startup message: "+err.Error())
		return false
	}
	p := &d.r.Path
	switch m := msg.(type) {
	case *pgproto3.AuthenticationSASL:
		p.Auth = append([]string(nil), m.AuthMechanisms...)
		judgeSASL(m.AuthMechanisms, pc, d)
	case *pgproto3.AuthenticationMD5Password:
		p.Auth = []string{"md5"}
		d.add(IDAuth, Warn, "the server asks for an MD5 password: weaker than SCRAM, and deprecated")
		d.advise(IDAuth, "server: password_encryption and pg_hba.conf", "scram-sha-256, then set the password again",
			"MD5 hashes can be replayed by whoever reads them")
	case *pgproto3.AuthenticationCleartextPassword:
		p.Auth = []string{"password"}
		d.add(IDAuth, Warn, "the server asks for the password in clear (inside TLS, if any)")
	case *pgproto3.AuthenticationOk:
		p.Auth = []string{"trust"}
		d.add(IDAuth, OK, "the server lets this user in without a password (trust)")
	case *pgproto3.ErrorResponse:
		d.add(IDAuth, Fail, "the server refused the login before any password: "+m.Message+" (SQLSTATE "+m.Code+")")
		return false
	default:
		p.Auth = []string{fmt.Sprintf("%T", m)}
		d.add(IDAuth, OK, fmt.Sprintf("the server asks for %T", m))
	}
	return true
}

// judgeSASL judges the SASL mechanisms offered.
func judgeSASL(mechs []string, pc *pgconn.Config, d *diagnosis) {
	plus := false
	for _, m := range mechs {
		plus = plus || m == "SCRAM-SHA-256-PLUS"
	}
	list := strings.Join(mechs, ", ")
	switch {
	case plus:
		d.add(IDAuth, OK, "SCRAM with channel binding offered ("+list+")")
	case pc.ChannelBinding == "require":
		d.add(IDAuth, Fail, "channel_binding=require but the server offers no SCRAM-SHA-256-PLUS ("+list+"): every login fails")
		d.advise(IDAuth, "channel_binding", "prefer (or remove it)", "this server, or a pooler in front of it, does not do channel binding")
	default:
		d.add(IDAuth, OK, "SCRAM offered without channel binding ("+list+"): a pooler in front, or no TLS")
	}
}
