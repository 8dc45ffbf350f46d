package doctor_test

import (
	"context"
	"net"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool/doctor"
)

// TestIdleSessionTimeout runs first and alone (not parallel): it sets idle_session_timeout for
// the whole server, and resets it before the parallel tests start.
func TestIdleSessionTimeout(t *testing.T) {
	s := pgharness.Require(t, srv)
	ctx := context.Background()
	if err := s.SetIdleSessionTimeout(ctx, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.SetIdleSessionTimeout(context.Background(), 0) })

	r := diagnose(t, s.DSN(), doctor.Options{})
	// Defaults: idle connections are kept up to IdleTimeout (2 min) + a health check (30 s).
	want(t, r, doctor.IDIdleSession, doctor.Warn)
	wantAdvice(t, r, doctor.IDIdleSession)

	r = diagnose(t, s.DSN()+"&pool_pre_ping=false", doctor.Options{})
	want(t, r, doctor.IDIdleSession, doctor.Fail)

	r = diagnose(t, s.DSN()+"&pool_max_conn_idle_time=20s&pool_health_check_period=10s", doctor.Options{})
	want(t, r, doctor.IDIdleSession, doctor.OK)
}

func TestDirect(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	r := diagnose(t, s.VerifyFullDSN(), doctor.Options{})
	for _, id := range []string{doctor.IDConnSSLMode, doctor.IDDNS, doctor.IDTCP, doctor.IDTLS, doctor.IDVerifyFull,
		doctor.IDAuth, doctor.IDSession, doctor.IDRTT, doctor.IDServerVersion, doctor.IDStandby, doctor.IDReadOnly,
		doctor.IDPoolerBehaviour, doctor.IDMaxConnections, doctor.IDIdleSession, doctor.IDIdleInTx,
		doctor.IDStatementTimeout, doctor.IDKeepAlive} {
		want(t, r, id, doctor.OK)
	}
	if r.Worst() != doctor.OK {
		t.Errorf("worst level %s, want ok", r.Worst())
	}
	if r.Server == nil || r.Server.Pooler != "none seen" || r.Server.InRecovery || r.Server.ReadOnly {
		t.Errorf("server: %+v", r.Server)
	}
	if !slices.Contains(r.Path.Auth, "SCRAM-SHA-256-PLUS") {
		t.Errorf("auth methods %v lack SCRAM-SHA-256-PLUS", r.Path.Auth)
	}
	if r.ConnString.SSLMode != "verify-full" || r.Path.TLS == nil || r.Path.TLS.VerifyFull != "" {
		t.Errorf("sslmode %q, tls %+v", r.ConnString.SSLMode, r.Path.TLS)
	}
	if len(r.Path.RTTs) != doctor.DefaultPings || r.Path.RTT <= 0 {
		t.Errorf("rtts %v, median %v", r.Path.RTTs, r.Path.RTT)
	}
	noPassword(t, r, s.Password())
}

func TestRequireDoesNotVerify(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	// localhost is local, so sslmode=require is fine there; a name that is not local is what
	// the warning is for. The harness's certificate is valid for StableName.
	res := pgharness.NewResolver()
	res.Set(pgharness.StableName, s.Addr())
	_, port, _ := net.SplitHostPort(s.Addr())
	dsn := pgharness.WithAddr(s.DSN(), net.JoinHostPort(pgharness.StableName, port))
	r := diagnose(t, dsn, doctor.Options{LookupFunc: res.LookupFunc})
	want(t, r, doctor.IDConnSSLMode, doctor.Warn)
	wantAdvice(t, r, doctor.IDConnSSLMode)
	want(t, r, doctor.IDDNS, doctor.OK)
	// Against the system's roots the throwaway CA is unknown.
	want(t, r, doctor.IDVerifyFull, doctor.Warn)
	want(t, r, doctor.IDSession, doctor.OK)
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	r := diagnose(t, s.DSN(), doctor.Options{Replicas: 100}) // 30 × 100 > max_connections 400
	want(t, r, doctor.IDMaxConnections, doctor.Fail)
	wantAdvice(t, r, doctor.IDMaxConnections)
}

func TestPgBouncerTransactionMode(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	r := diagnose(t, s.BouncerDSN(), doctor.Options{})
	want(t, r, doctor.IDPoolerBehaviour, doctor.Fail)
	wantAdvice(t, r, doctor.IDPoolerBehaviour)
	if r.Server == nil || r.Server.Pooler != "transaction" {
		t.Errorf("server: %+v", r.Server)
	}
	// PgBouncer 1.18 does not do channel binding.
	if slices.Contains(r.Path.Auth, "SCRAM-SHA-256-PLUS") || !slices.Contains(r.Path.Auth, "SCRAM-SHA-256") {
		t.Errorf("auth methods %v", r.Path.Auth)
	}

	r = diagnose(t, s.BouncerDSN()+"&pooler=transaction", doctor.Options{Replicas: 100})
	want(t, r, doctor.IDPoolerBehaviour, doctor.OK)
	want(t, r, doctor.IDConnPooler, doctor.OK)
	want(t, r, doctor.IDMaxConnections, doctor.OK) // the pooler multiplexes

	// channel_binding=require cannot log in through it.
	r = diagnose(t, s.BouncerDSN()+"&channel_binding=require&pgsteady_keep_channel_binding=true", doctor.Options{})
	want(t, r, doctor.IDAuth, doctor.Fail)
	want(t, r, doctor.IDSession, doctor.Fail)
}

func TestReadOnlyRole(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	role := "doctor_ro_" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	admin(t, "CREATE ROLE "+role+" LOGIN PASSWORD 'ro-secret'",
		"ALTER ROLE "+role+" SET default_transaction_read_only = on")
	t.Cleanup(func() { admin(t, "DROP ROLE IF EXISTS "+role) })
	u, _ := url.Parse(s.DSN())
	u.User = url.UserPassword(role, "ro-secret")
	r := diagnose(t, u.String(), doctor.Options{})
	want(t, r, doctor.IDReadOnly, doctor.Warn)
	wantAdvice(t, r, doctor.IDReadOnly)
	want(t, r, doctor.IDStandby, doctor.OK)
	if r.Server == nil || r.Server.ReadOnlySource != "user" {
		t.Errorf("server: %+v", r.Server)
	}
	noPassword(t, r, "ro-secret")
}

func TestWrongCA(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	u, _ := url.Parse(s.VerifyFullDSN())
	q := u.Query()
	q.Set("sslrootcert", otherCA(t))
	u.RawQuery = q.Encode()
	r := diagnose(t, u.String(), doctor.Options{})
	want(t, r, doctor.IDTLS, doctor.OK)
	want(t, r, doctor.IDVerifyFull, doctor.Fail)
	wantAdvice(t, r, doctor.IDVerifyFull)
	want(t, r, doctor.IDSession, doctor.Fail)
	if r.Server != nil {
		t.Errorf("server examined through a failed session: %+v", r.Server)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	u, _ := url.Parse(s.DSN())
	u.User = url.UserPassword("app", "not-the-password")
	r := diagnose(t, u.String(), doctor.Options{})
	want(t, r, doctor.IDAuth, doctor.OK) // SCRAM is offered before any password is checked
	want(t, r, doctor.IDSession, doctor.Fail)
	noPassword(t, r, "not-the-password")
}

func TestRefusedPort(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	r := diagnose(t, pgharness.WithAddr(s.DSN(), testhelp.RefusedAddr(t)), doctor.Options{})
	want(t, r, doctor.IDTCP, doctor.Fail)
	if len(r.Find(doctor.IDSession)) != 0 || r.Server != nil {
		t.Errorf("went on after a refused connection: %v", r.Findings)
	}
}

func TestUnresolvableName(t *testing.T) {
	t.Parallel()
	s := pgharness.Require(t, srv)
	res := pgharness.NewResolver() // knows no names: "no such host", and no real DNS is asked
	r := diagnose(t, pgharness.WithAddr(s.DSN(), "db.doctor.invalid:5432"), doctor.Options{LookupFunc: res.LookupFunc})
	want(t, r, doctor.IDDNS, doctor.Fail)
	if len(r.Find(doctor.IDTCP)) != 0 {
		t.Errorf("went on after a failed lookup: %v", r.Findings)
	}
}

func TestStandby(t *testing.T) {
	t.Parallel()
	pgharness.Require(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pair, err := pgharness.StartPair(ctx, pgharness.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pair.Close() })
	r := diagnose(t, pair.Standby.DSN(), doctor.Options{})
	want(t, r, doctor.IDStandby, doctor.Warn)
	if r.Server == nil || !r.Server.InRecovery {
		t.Errorf("server: %+v", r.Server)
	}
	r = diagnose(t, pair.Primary.DSN(), doctor.Options{})
	want(t, r, doctor.IDStandby, doctor.OK)

	// A primary fenced read-only for every session: read-only at the server's level, and no
	// advice to undo it (that is a failover's doing, not the application's).
	if err := pair.Primary.SetReadOnly(ctx, true); err != nil {
		t.Fatal(err)
	}
	r = diagnose(t, pair.Primary.DSN(), doctor.Options{})
	want(t, r, doctor.IDReadOnly, doctor.Warn)
	if r.Server == nil || r.Server.ReadOnlySource != "configuration file" {
		t.Errorf("server: %+v", r.Server)
	}
}
