package pgharness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
)

// ImageEnv names the environment variable that selects a prebuilt image for the test database.
// When it is empty the harness uses the image tagged [LocalImage] if Docker has it, and otherwise
// builds that image from the Dockerfile embedded here, on top of the public postgres image.
const ImageEnv = "PGSTEADY_TEST_IMAGE"

// BaseImageEnv names the environment variable that overrides the Dockerfile's BASE build
// argument when the harness has to build [LocalImage] itself.
const BaseImageEnv = "PGSTEADY_TEST_BASE_IMAGE"

// LocalImage is the tag the harness gives the image it builds, and looks for before building.
const LocalImage = "pgsteady-testdb:local"

// Labels put on every container the harness starts, so leftovers can be found and removed.
const (
	labelHarness = "org.pgsteady.harness"
	labelPID     = "org.pgsteady.pid"
	labelContext = "org.pgsteady.context"
)

const (
	appUser      = "app"
	appDatabase  = "pgsteady"
	postgresPort = "5432/tcp"
	bouncerPort  = "6432/tcp"
)

//go:embed image/Dockerfile image/entrypoint.sh
var imageFiles embed.FS

// Options chooses what [Start] brings up.
type Options struct {
	// PgBouncer publishes the container's PgBouncer (transaction mode, TLS) so that
	// [Server.BouncerDSN] can be used.
	PgBouncer bool
}

// Server is a running disposable PostgreSQL (and PgBouncer) container. Its methods are safe for
// concurrent use; the fault methods change the server for every user of it.
type Server struct {
	ctr         testcontainers.Container
	docker      *testcontainers.DockerClient
	port        int
	bouncerPort int
	appPassword string
	suPassword  string
	tls         *tlsMaterial
	dir         string
	closeOnce   sync.Once
	closeErr    error
}

// Start brings up a fresh server with TLS on, SCRAM password authentication and hostssl only.
// Ports are published on 127.0.0.1 alone. The caller must call [Server.Close].
func Start(ctx context.Context, opts Options) (*Server, error) {
	return start(ctx, opts, nil)
}

// start is [Start]; with like non-nil the new server gets like's passwords and TLS material
// (a standby must share them with its primary).
func start(ctx context.Context, opts Options, like *Server) (s *Server, err error) {
	setDefaultsOnce.Do(func() {
		setDefaultEnv()
		if os.Getenv("PGSTEADY_HARNESS_LOG") == "" {
			tclog.SetDefault(tclog.NewNoopLogger())
		}
	})
	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgharness: no Docker engine answers: %w", err)
	}
	s = &Server{docker: docker}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	removeStale(ctx, docker)
	if like == nil {
		if like, err = newCredentials(); err != nil {
			return s, err
		}
	}
	s.appPassword, s.suPassword, s.tls = like.appPassword, like.suPassword, like.tls
	if s.dir, err = os.MkdirTemp("", "pgharness-"); err != nil {
		return s, fmt.Errorf("pgharness: %w", err)
	}
	if err = os.WriteFile(s.CAFile(), s.tls.caPEM, 0o600); err != nil {
		return s, fmt.Errorf("pgharness: %w", err)
	}

	req := testcontainers.ContainerRequest{
		Env: map[string]string{
			"PGSTEADY_APP_PASSWORD":       s.appPassword,
			"PGSTEADY_SUPERUSER_PASSWORD": s.suPassword,
			"PGSTEADY_TLS_CERT":           string(s.tls.certPEM),
			"PGSTEADY_TLS_KEY":            string(s.tls.keyPEM),
			"PGSTEADY_TLS_CA":             string(s.tls.caPEM),
		},
		Labels: map[string]string{
			labelHarness: "1",
			labelPID:     strconv.Itoa(os.Getpid()),
		},
		ExposedPorts: []string{postgresPort},
		WaitingFor:   wait.ForLog("database system is ready to accept connections").WithStartupTimeout(2 * time.Minute),
	}
	if opts.PgBouncer {
		req.ExposedPorts = append(req.ExposedPorts, bouncerPort)
	}
	req.HostConfigModifier = func(hc *container.HostConfig) {
		loopback := netip.MustParseAddr("127.0.0.1")
		hc.PortBindings = network.PortMap{}
		for _, p := range req.ExposedPorts {
			hc.PortBindings[network.MustParsePort(p)] = []network.PortBinding{{HostIP: loopback}}
		}
	}
	if err = s.chooseImage(ctx, &req); err != nil {
		return s, err
	}
	s.ctr, err = testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if err != nil {
		return s, fmt.Errorf("pgharness: start container: %w", err)
	}
	if s.port, err = s.mappedPort(ctx, postgresPort); err != nil {
		return s, err
	}
	if opts.PgBouncer {
		if s.bouncerPort, err = s.mappedPort(ctx, bouncerPort); err != nil {
			return s, err
		}
	}
	if err = s.waitReady(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// newCredentials makes fresh passwords and TLS material, held in a Server that is not started.
func newCredentials() (*Server, error) {
	m, err := newTLSMaterial()
	if err != nil {
		return nil, err
	}
	return &Server{appPassword: randomHex(16), suPassword: randomHex(16), tls: m}, nil
}

// setDefaultsOnce runs setDefaultEnv and silences testcontainers' log once per process:
// StartPair starts two servers at the same time, and both would set the same globals.
var setDefaultsOnce sync.Once

// setDefaultEnv points testcontainers at loopback and turns its reaper off unless the user said
// otherwise: the harness removes its own containers (see [Server.Close] and removeStale), and the
// reaper's image cannot be pulled on an air-gapped machine.
func setDefaultEnv() {
	for k, v := range map[string]string{
		"TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
		"TESTCONTAINERS_RYUK_DISABLED": "true",
	} {
		if _, ok := os.LookupEnv(k); !ok {
			os.Setenv(k, v)
		}
	}
}

// chooseImage fills in the image: $PGSTEADY_TEST_IMAGE, else [LocalImage] if present, else a
// build of the embedded Dockerfile kept under the [LocalImage] tag for the next run.
func (s *Server) chooseImage(ctx context.Context, req *testcontainers.ContainerRequest) error {
	if img := os.Getenv(ImageEnv); img != "" {
		req.Image = img
		return nil
	}
	hash := contextHash()
	if img, err := s.docker.ImageInspect(ctx, LocalImage); err == nil && img.Config != nil && img.Config.Labels[labelContext] == hash {
		req.Image = LocalImage
		return nil
	}
	archive, err := buildContext()
	if err != nil {
		return err
	}
	args := map[string]*string{}
	if base := os.Getenv(BaseImageEnv); base != "" {
		args["BASE"] = &base
	}
	repo, tag, _ := strings.Cut(LocalImage, ":")
	req.FromDockerfile = testcontainers.FromDockerfile{
		ContextArchive: archive,
		Repo:           repo,
		Tag:            tag,
		BuildArgs:      args,
		KeepImage:      true,
		BuildOptionsModifier: func(o *client.ImageBuildOptions) {
			o.Labels = map[string]string{labelContext: hash}
		},
	}
	return nil
}

// contextHash identifies the embedded image definition; .ci/run computes the same value
// (sha256 of the Dockerfile followed by the entry script) and stores it in the labelContext label.
func contextHash() string {
	h := sha256.New()
	for _, name := range []string{"Dockerfile", "entrypoint.sh"} {
		b, _ := imageFiles.ReadFile("image/" + name)
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// buildContext tars the embedded Dockerfile and entry script.
func buildContext() (io.ReadSeeker, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"Dockerfile", "entrypoint.sh"} {
		b, err := imageFiles.ReadFile("image/" + name)
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return bytes.NewReader(buf.Bytes()), nil
}

func (s *Server) mappedPort(ctx context.Context, p string) (int, error) {
	mp, err := s.ctr.MappedPort(ctx, p)
	if err != nil {
		return 0, fmt.Errorf("pgharness: port %s: %w", p, err)
	}
	return int(mp.Num()), nil
}

// waitReady waits until the app user can log in over TLS, on the server and through PgBouncer.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	dsns := []string{s.DSN()}
	if s.bouncerPort != 0 {
		dsns = append(dsns, s.BouncerDSN())
	}
	for _, dsn := range dsns {
		var lastErr error
		for {
			conn, err := pgx.Connect(ctx, dsn)
			if err == nil {
				err = conn.Ping(ctx)
				conn.Close(context.Background())
			}
			if err == nil {
				break
			}
			lastErr = err
			select {
			case <-ctx.Done():
				return fmt.Errorf("pgharness: server not ready: %w", lastErr)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// Close removes the container and the temporary files. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var errs []error
		if s.ctr != nil {
			errs = append(errs, s.ctr.Terminate(ctx, testcontainers.StopTimeout(0)))
		}
		if s.docker != nil {
			errs = append(errs, s.docker.Close())
		}
		if s.dir != "" {
			errs = append(errs, os.RemoveAll(s.dir))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// removeStale removes harness containers left behind by test processes that no longer exist
// (a test binary that panicked or was killed never reaches its cleanup).
func removeStale(ctx context.Context, docker *testcontainers.DockerClient) {
	list, err := docker.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", labelHarness),
	})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		pid, err := strconv.Atoi(c.Labels[labelPID])
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Addr is the published host:port of PostgreSQL, on 127.0.0.1.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// BouncerAddr is the published host:port of PgBouncer, on 127.0.0.1, or "" without
// [Options.PgBouncer].
func (s *Server) BouncerAddr() string {
	if s.bouncerPort == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(s.bouncerPort)
}

// CAFile is the path of the PEM file holding the throwaway CA that signed the server certificate.
func (s *Server) CAFile() string { return filepath.Join(s.dir, "ca.pem") }

// CAPEM is the throwaway CA certificate in PEM form.
func (s *Server) CAPEM() []byte { return bytes.Clone(s.tls.caPEM) }

// Password is the app user's password (tests of redaction need it).
func (s *Server) Password() string { return s.appPassword }

func dsn(user, password, hostport, database string, query url.Values) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: hostport, Path: "/" + database}
	u.RawQuery = query.Encode()
	return u.String()
}

// DSN connects the app user (owner of database "pgsteady") to PostgreSQL with sslmode=require.
func (s *Server) DSN() string {
	return dsn(appUser, s.appPassword, s.Addr(), appDatabase, url.Values{"sslmode": {"require"}})
}

// VerifyFullDSN is [Server.DSN] with sslmode=verify-full against the throwaway CA.
func (s *Server) VerifyFullDSN() string {
	return dsn(appUser, s.appPassword, s.Addr(), appDatabase,
		url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.CAFile()}})
}

// AdminDSN connects the superuser to database "postgres" with sslmode=require.
func (s *Server) AdminDSN() string {
	return dsn("postgres", s.suPassword, s.Addr(), "postgres", url.Values{"sslmode": {"require"}})
}

// BouncerDSN connects the app user through PgBouncer in transaction mode, with sslmode=require.
// It is "" without [Options.PgBouncer].
func (s *Server) BouncerDSN() string {
	if s.bouncerPort == 0 {
		return ""
	}
	return dsn(appUser, s.appPassword, s.BouncerAddr(), appDatabase, url.Values{"sslmode": {"require"}})
}

// WithAddr returns dsn (a URL) with its host:port replaced, for example by a fault proxy's address.
func WithAddr(dsn, hostport string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic("pgharness: WithAddr: not a URL DSN")
	}
	u.Host = hostport
	return u.String()
}

// WithDatabase returns dsn (a URL) naming another database.
func WithDatabase(dsn, database string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic("pgharness: WithDatabase: not a URL DSN")
	}
	u.Path = "/" + database
	return u.String()
}

// NewDatabase creates an empty database owned by the app user and returns a DSN for it, so that
// tests running in parallel do not see each other's tables. It is reachable through PgBouncer as
// well, under the same name.
func (s *Server) NewDatabase(ctx context.Context) (string, error) {
	name := "t_" + randomHex(6)
	if err := s.admin(ctx, "CREATE DATABASE "+name+" OWNER "+appUser); err != nil {
		return "", err
	}
	return WithDatabase(s.DSN(), name), nil
}

// admin runs statements as the superuser over a short-lived TLS connection.
func (s *Server) admin(ctx context.Context, sqls ...string) error {
	conn, err := pgx.Connect(ctx, s.AdminDSN())
	if err != nil {
		return fmt.Errorf("pgharness: admin connect: %w", err)
	}
	defer conn.Close(context.Background())
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("pgharness: %s: %w", q, err)
		}
	}
	return nil
}
