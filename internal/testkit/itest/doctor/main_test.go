// Package doctor_test checks that doctor.Diagnose and doctor.Watch find, against real servers
// and real faults, what they should: each test asserts findings by their stable ID and level,
// never by wording or by time.
package doctor_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/pool/doctor"
)

var srv *pgharness.Server

func TestMain(m *testing.M) { pgharness.Main(m, &srv, pgharness.Options{PgBouncer: true}) }

// diagnose parses dsn and diagnoses it, failing t on a config error.
func diagnose(t *testing.T, dsn string, opts doctor.Options) doctor.Report {
	t.Helper()
	cfg, err := config.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := doctor.Diagnose(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	r.WriteText(&b)
	t.Log("\n" + b.String())
	return r
}

// want fails t unless r has a finding id at level l.
func want(t *testing.T, r doctor.Report, id string, l doctor.Level) {
	t.Helper()
	fs := r.Find(id)
	for _, f := range fs {
		if f.Level == l {
			return
		}
	}
	t.Errorf("finding %s: got %v, want level %s", id, fs, l)
}

// wantAdvice fails t unless r has advice for the finding id.
func wantAdvice(t *testing.T, r doctor.Report, id string) {
	t.Helper()
	for _, a := range r.Advice {
		if a.ID == id {
			return
		}
	}
	t.Errorf("no advice for %s in %v", id, r.Advice)
}

// noPassword fails t if the report's JSON-able text holds the password.
func noPassword(t *testing.T, r doctor.Report, password string) {
	t.Helper()
	var b strings.Builder
	r.WriteText(&b)
	if strings.Contains(b.String(), password) || strings.Contains(r.ConnString.Masked, password) {
		t.Error("the report shows the password")
	}
}

// admin runs statements as the superuser.
func admin(t *testing.T, sqls ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := pgx.Connect(ctx, srv.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range sqls {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// otherCA writes a CA certificate that did not sign the server's certificate and returns its path.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "not the server's CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
