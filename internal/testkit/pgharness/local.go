package pgharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// localDirPrefix starts the name of every throwaway cluster folder, followed by the owning
// process's pid and a dash, so that a later start can sweep away the folders of dead owners.
const localDirPrefix = "pgsteady-local-"

// localShutdownTimeout bounds the fast shutdown in [Cluster.Close] before the server's process
// group is killed.
const localShutdownTimeout = 30 * time.Second

// errPortTaken says that the port picked for the server was taken before the server bound it.
var errPortTaken = errors.New("port taken")

// Cluster is a throwaway PostgreSQL cluster run from the server binaries on this machine, set up
// like the Docker [Server]: TLS with a certificate made for the run, SCRAM password
// authentication, hostssl only, listening on 127.0.0.1 alone, the superuser postgres, and the
// app user owning database "pgsteady". Its folder (data, certificate, log) lives in the system's
// temporary directory and is removed by [Cluster.Close]. Its methods are safe for concurrent
// use; the fault methods change the server for every user of it. There is no PgBouncer.
type Cluster struct {
	bin         string // directory of initdb and postgres
	version     string // "15.18"
	dir         string
	port        int
	user        *serverUser // nil unless run as root
	appPassword string
	suPassword  string
	tls         *tlsMaterial

	mu     sync.Mutex
	pm     *postmaster // the current server process, nil before the first start
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// postmaster is one run of the server process.
type postmaster struct {
	pid  int
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // its exit status, set before done is closed
}

// StartLocal starts a throwaway cluster from the PostgreSQL server binaries found by
// [FindLocalBinaries]: initdb in a new folder under the system's temporary directory, postgres
// on a free port of 127.0.0.1, then the app user and its database. Run as root, the cluster's
// processes run as the postgres account (or nobody), which owns the folder. ctx bounds the
// start; on any failure, and on ctx's end, everything started is removed before StartLocal
// returns. The caller must call [Cluster.Close].
//
// Folders of clusters whose owning process has died (killed outright, so that its cleanup never
// ran) are removed first, their servers stopped. On Linux the server also stops by itself when
// its owner dies (a parent-death signal).
func StartLocal(ctx context.Context) (c *Cluster, err error) {
	bin, err := FindLocalBinaries()
	if err != nil {
		return nil, err
	}
	version, err := serverVersion(bin)
	if err != nil {
		return nil, err
	}
	u, err := unprivilegedUser()
	if err != nil {
		return nil, err
	}
	sweepStaleClusters()

	c = &Cluster{bin: bin, version: version, user: u, appPassword: randomHex(16), suPassword: randomHex(16)}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	if c.tls, err = newTLSMaterial(); err != nil {
		return c, err
	}
	if c.dir, err = os.MkdirTemp("", fmt.Sprintf("%s%d-", localDirPrefix, os.Getpid())); err != nil {
		return c, fmt.Errorf("pgharness: %w", err)
	}
	pwfile := filepath.Join(c.dir, "pwfile")
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{"ca.pem", c.tls.caPEM, 0o644},
		{"server.crt", c.tls.certPEM, 0o644},
		{"server.key", c.tls.keyPEM, 0o600},
		{"pwfile", []byte(c.suPassword + "\n"), 0o600},
	} {
		if err = os.WriteFile(filepath.Join(c.dir, f.name), f.data, f.perm); err != nil {
			return c, fmt.Errorf("pgharness: %w", err)
		}
	}
	if err = c.user.chownAll(c.dir); err != nil {
		return c, fmt.Errorf("pgharness: %w", err)
	}

	// The same cluster as image/entrypoint.sh makes, except for the locale (C, which exists on
	// every system) and the Unix socket (none: TCP over TLS is the only way in).
	err = c.run(ctx, "initdb", "-D", c.dataDir(), "-U", "postgres", "-E", "UTF8", "--no-locale",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile, "--no-sync")
	os.Remove(pwfile)
	if err != nil {
		return c, err
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 400
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
password_encryption = 'scram-sha-256'
# A disposable server: durability against power loss is not under test.
fsync = off
full_page_writes = off
`, filepath.Join(c.dir, "server.crt"), filepath.Join(c.dir, "server.key"))
	if err = appendFile(filepath.Join(c.dataDir(), "postgresql.conf"), conf); err != nil {
		return c, err
	}
	if err = os.WriteFile(filepath.Join(c.dataDir(), "pg_hba.conf"), []byte("hostssl all all all scram-sha-256\n"), 0o600); err != nil {
		return c, fmt.Errorf("pgharness: %w", err)
	}
	if err = c.user.chownAll(c.dir); err != nil {
		return c, fmt.Errorf("pgharness: %w", err)
	}

	// The free port is found by binding it and letting it go; another process may take it in
	// between, and then the server fails to bind: try another.
	for attempt := 1; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return c, err
		}
		err = c.StartServer(ctx)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == 5 {
			break
		}
	}
	if err != nil {
		return c, err
	}
	err = adminExec(ctx, c.AdminDSN(),
		"CREATE ROLE "+appUser+" LOGIN CREATEDB PASSWORD '"+c.appPassword+"'",
		"CREATE DATABASE "+appDatabase+" OWNER "+appUser)
	return c, err
}

// run runs one of the cluster's binaries to completion, as the server user, and fails with the
// tail of its output. ctx's end kills its whole process group.
func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = c.dir, serverEnv(), serverProcAttr(c.user.credential())
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("pgharness: %s: %w", name, ctx.Err())
		}
		return fmt.Errorf("pgharness: %s: %w: %s", name, err, tail(out))
	}
	return nil
}

// spawn starts the server process; it does not wait for it to accept connections.
func (c *Cluster) spawn() (*postmaster, error) {
	logf, err := os.OpenFile(c.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgharness: %w", err)
	}
	if err := c.user.chownAll(c.logFile()); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pgharness: %w", err)
	}
	pm := &postmaster{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Linux delivers the parent-death signal when the thread that started the child ends,
		// not the process: keep this thread for as long as the server lives. (A goroutine that
		// ends while locked takes its thread with it, after the server has gone.)
		runtime.LockOSThread()
		defer close(pm.done)
		defer logf.Close()
		cmd := exec.Command(filepath.Join(c.bin, "postgres"), "-D", c.dataDir(), "-p", strconv.Itoa(c.port))
		cmd.Dir, cmd.Env, cmd.SysProcAttr = c.dir, serverEnv(), serverProcAttr(c.user.credential())
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			pm.err = err
			started <- err
			return
		}
		pm.pid = cmd.Process.Pid
		started <- nil
		pm.err = cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("pgharness: start postgres: %w", err)
	}
	return pm, nil
}

// waitReady waits until the superuser can log in over TLS, or the server process exits.
func (c *Cluster) waitReady(ctx context.Context, pm *postmaster) error {
	for {
		select {
		case <-pm.done:
			log := c.logTail()
			// PostgreSQL gives no code for this; its message is the only sign.
			if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
				return fmt.Errorf("pgharness: postgres on port %d: %w", c.port, errPortTaken)
			}
			return fmt.Errorf("pgharness: postgres exited at start (%v): %s", pm.err, log)
		default:
		}
		conn, err := pgx.Connect(ctx, c.AdminDSN())
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgharness: local server not ready: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// stop signals the server (SIGINT: fast shutdown, clients get 57P01) and waits for it to end.
// When ctx ends first, the server's whole process group is killed.
func (pm *postmaster) stop(ctx context.Context) error {
	select {
	case <-pm.done:
		return nil
	default:
	}
	syscall.Kill(pm.pid, syscall.SIGINT)
	select {
	case <-pm.done:
		return nil
	case <-ctx.Done():
		syscall.Kill(-pm.pid, syscall.SIGKILL)
		<-pm.done
		return ctx.Err()
	}
}

// StopServer shuts the server down (fast shutdown: clients get 57P01) and keeps it down until
// [Cluster.StartServer]; connection attempts are refused meanwhile. ctx bounds the wait; when it
// ends first, the server is killed.
func (c *Cluster) StopServer(ctx context.Context) error {
	c.mu.Lock()
	pm := c.pm
	c.mu.Unlock()
	if pm == nil {
		return nil
	}
	return pm.stop(ctx)
}

// StartServer starts the server again after [Cluster.StopServer], on the same port, and waits
// until it accepts connections. It does nothing when the server is running.
func (c *Cluster) StartServer(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("pgharness: cluster closed")
	}
	if c.pm != nil {
		select {
		case <-c.pm.done:
		default:
			c.mu.Unlock()
			return nil
		}
	}
	pm, err := c.spawn()
	if err != nil {
		c.mu.Unlock()
		return err
	}
	c.pm = pm
	c.mu.Unlock()
	return c.waitReady(ctx, pm)
}

// Restart stops the server, keeps it down for down (0 restarts at once), starts it again on the
// same port and waits until it accepts connections. ctx bounds the whole restart.
func (c *Cluster) Restart(ctx context.Context, down time.Duration) error {
	if err := c.StopServer(ctx); err != nil {
		return err
	}
	t := time.NewTimer(down)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	return c.StartServer(ctx)
}

// TerminateBackends kills every client backend but its own with pg_terminate_backend, as
// [Server.TerminateBackends] does, and returns how many were signalled.
func (c *Cluster) TerminateBackends(ctx context.Context) (int, error) {
	return terminateBackends(ctx, c.AdminDSN())
}

// SetIdleSessionTimeout sets the server-wide idle_session_timeout (0 turns it off) and reloads
// the configuration, as [Server.SetIdleSessionTimeout] does.
func (c *Cluster) SetIdleSessionTimeout(ctx context.Context, d time.Duration) error {
	stmt := "ALTER SYSTEM RESET idle_session_timeout"
	if d > 0 {
		stmt = fmt.Sprintf("ALTER SYSTEM SET idle_session_timeout = '%dms'", d.Milliseconds())
	}
	return adminExec(ctx, c.AdminDSN(), stmt, "SELECT pg_reload_conf()")
}

// NewDatabase creates an empty database owned by the app user and returns a DSN for it.
func (c *Cluster) NewDatabase(ctx context.Context) (string, error) {
	name := "t_" + randomHex(6)
	if err := adminExec(ctx, c.AdminDSN(), "CREATE DATABASE "+name+" OWNER "+appUser); err != nil {
		return "", err
	}
	return WithDatabase(c.DSN(), name), nil
}

// Close stops the server (fast shutdown, then a kill of its process group after 30 s) and
// removes the cluster's folder. It is idempotent, and the cluster cannot be started again.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		pm := c.pm
		c.mu.Unlock()
		var errs []error
		if pm != nil {
			ctx, cancel := context.WithTimeout(context.Background(), localShutdownTimeout)
			if err := pm.stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("pgharness: stop postgres: %w", err))
			}
			cancel()
		}
		if c.dir != "" {
			errs = append(errs, os.RemoveAll(c.dir))
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// Addr is the server's host:port, on 127.0.0.1.
func (c *Cluster) Addr() string { return "127.0.0.1:" + strconv.Itoa(c.port) }

// Dir is the cluster's folder: data/, the certificates and server.log.
func (c *Cluster) Dir() string { return c.dir }

// PID is the server (postmaster) process's id, or 0 when it is not running.
func (c *Cluster) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pm == nil {
		return 0
	}
	select {
	case <-c.pm.done:
		return 0
	default:
		return c.pm.pid
	}
}

// CAFile is the path of the PEM file holding the throwaway CA that signed the server certificate.
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "ca.pem") }

// CAPEM is the throwaway CA certificate in PEM form.
func (c *Cluster) CAPEM() []byte { return bytes.Clone(c.tls.caPEM) }

// Password is the app user's password.
func (c *Cluster) Password() string { return c.appPassword }

// DSN connects the app user (owner of database "pgsteady") with sslmode=require.
func (c *Cluster) DSN() string {
	return dsn(appUser, c.appPassword, c.Addr(), appDatabase, url.Values{"sslmode": {"require"}})
}

// VerifyFullDSN is [Cluster.DSN] with sslmode=verify-full against the throwaway CA.
func (c *Cluster) VerifyFullDSN() string {
	return dsn(appUser, c.appPassword, c.Addr(), appDatabase,
		url.Values{"sslmode": {"verify-full"}, "sslrootcert": {c.CAFile()}})
}

// AdminDSN connects the superuser to database "postgres" with sslmode=require.
func (c *Cluster) AdminDSN() string {
	return dsn("postgres", c.suPassword, c.Addr(), "postgres", url.Values{"sslmode": {"require"}})
}

// String says what the cluster is: "PostgreSQL 15.18 from /usr/lib/postgresql/15/bin, cluster
// in /tmp/pgsteady-local-..., run as postgres".
func (c *Cluster) String() string {
	s := fmt.Sprintf("PostgreSQL %s from %s, cluster in %s", c.version, c.bin, c.dir)
	if c.user != nil {
		s += ", run as " + c.user.name
	}
	return s
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }
func (c *Cluster) logFile() string { return filepath.Join(c.dir, "server.log") }

// logTail is the end of the server's log, for errors.
func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(c.logFile())
	return tail(b)
}

func (u *serverUser) credential() *syscall.Credential {
	if u == nil {
		return nil
	}
	return u.cred
}

// tail is the last lines of a program's output, at most about 1 KB, on one line.
func tail(b []byte) string {
	const max = 1000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// serverEnv is this process's environment without the PG* variables (PGPORT, PGDATA, ...), which
// initdb and postgres would otherwise read.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgharness: %w", err)
	}
	_, err = io.WriteString(f, text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgharness: %w", err)
	}
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgharness: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// adminExec runs statements over a short-lived connection.
func adminExec(ctx context.Context, dsn string, sqls ...string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgharness: admin connect: %w", err)
	}
	defer conn.Close(context.Background())
	for _, q := range sqls {
		if _, err := conn.Exec(ctx, q); err != nil {
			// A statement may carry a password: name its first words only.
			words := strings.Fields(q)
			return fmt.Errorf("pgharness: %s: %w", strings.Join(words[:min(3, len(words))], " "), err)
		}
	}
	return nil
}

// terminateBackends is the body of [Server.TerminateBackends] and [Cluster.TerminateBackends].
func terminateBackends(ctx context.Context, adminDSN string) (int, error) {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return 0, fmt.Errorf("pgharness: admin connect: %w", err)
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgharness: terminate backends: %w", err)
	}
	return n, nil
}

// sweepStaleClusters removes the folders of clusters whose owning process no longer exists,
// after stopping their server if it still runs (immediate shutdown). Where the server cannot be
// identified for sure (no /proc), it is left alone: PostgreSQL shuts itself down within a
// minute once its data directory's lock file is gone.
func sweepStaleClusters() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), localDirPrefix+"*"))
	for _, d := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(d), localDirPrefix), "-")
		owner, err := strconv.Atoi(pidText)
		if !ok || err != nil || owner == os.Getpid() || syscall.Kill(owner, 0) != syscall.ESRCH {
			continue
		}
		if pid := stalePostmaster(d); pid > 0 {
			syscall.Kill(pid, syscall.SIGQUIT)
			for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}
		os.RemoveAll(d)
	}
}

// stalePostmaster returns the pid in dir's postmaster.pid when /proc shows that process is a
// server of dir, else 0.
func stalePostmaster(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return 0
	}
	return pid
}
