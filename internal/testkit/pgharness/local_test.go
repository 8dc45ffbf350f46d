package pgharness_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
)

// startLocal starts a throwaway cluster for one test and closes it at the end.
func startLocal(t *testing.T) *pgharness.Cluster {
	t.Helper()
	pgharness.RequireLocal(t)
	c, err := pgharness.StartLocal(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return c
}

func TestLocalClusterIsSetUpLikeTheDockerOne(t *testing.T) {
	c := startLocal(t)
	ctx := t.Context()
	for name, dsn := range map[string]string{"require": c.DSN(), "verify-full": c.VerifyFullDSN(), "superuser": c.AdminDSN()} {
		t.Run(name, func(t *testing.T) {
			if !usesTLS(t, connect(t, dsn)) {
				t.Fatal("session is not encrypted")
			}
		})
	}
	t.Run("the app user owns database pgsteady", func(t *testing.T) {
		var owner, method string
		err := connect(t, c.DSN()).QueryRow(ctx, `SELECT pg_get_userbyid(datdba), current_setting('password_encryption')
			FROM pg_database WHERE datname = current_database()`).Scan(&owner, &method)
		if err != nil || owner != "app" || method != "scram-sha-256" {
			t.Fatalf("owner %q, password_encryption %q, err %v", owner, method, err)
		}
	})
	t.Run("listens on 127.0.0.1 alone", func(t *testing.T) {
		host, _, _ := net.SplitHostPort(c.Addr())
		var listen string
		if err := connect(t, c.AdminDSN()).QueryRow(ctx, "SHOW listen_addresses").Scan(&listen); err != nil {
			t.Fatal(err)
		}
		if host != "127.0.0.1" || listen != "127.0.0.1" {
			t.Fatalf("address %s, listen_addresses %q", c.Addr(), listen)
		}
	})
	for name, dsn := range map[string]string{
		"plaintext refused":      c.DSN() + "&sslmode=disable",
		"wrong password refused": "postgres://app:wrong@" + c.Addr() + "/pgsteady?sslmode=require",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, dsn)
			if err == nil {
				conn.Close(ctx)
				t.Fatal("connected")
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28000" && pgErr.Code != "28P01" {
				t.Fatalf("want an authentication error, got %v", err)
			}
		})
	}
}

func TestLocalClusterRunsAsAnUnprivilegedUserUnderRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not running as root: the server runs as the current user")
	}
	c := startLocal(t)
	uid := procUID(t, c.PID())
	if uid == 0 {
		t.Fatal("the server runs as root")
	}
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil || u.Username != "postgres" && u.Username != "nobody" {
		t.Fatalf("server runs as uid %d (%v, %v), want postgres or nobody", uid, u, err)
	}
	err = filepath.Walk(c.Dir(), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if owner := int(fi.Sys().(*syscall.Stat_t).Uid); owner != uid {
			return fmt.Errorf("%s is owned by uid %d, want %d", p, owner, uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLocalClusterFaults(t *testing.T) {
	c := startLocal(t)
	ctx := t.Context()

	t.Run("TerminateBackends kills open sessions", func(t *testing.T) {
		conn := connect(t, c.DSN())
		n, err := c.TerminateBackends(ctx)
		if err != nil || n < 1 {
			t.Fatalf("terminated %d backends, err %v; want at least 1", n, err)
		}
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatal("a terminated session still answered")
		}
	})

	t.Run("StopServer keeps it down until StartServer, on the same port", func(t *testing.T) {
		conn := connect(t, c.DSN())
		addr := c.Addr()
		if err := c.StopServer(ctx); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := pgx.Connect(short, c.DSN())
		cancel()
		if err == nil {
			t.Fatal("connected while the server was down")
		}
		if err := c.StartServer(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT 1"); err == nil {
			t.Fatal("a session from before the restart still answered")
		}
		if err := c.Restart(ctx, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if c.Addr() != addr {
			t.Fatalf("address changed from %s to %s", addr, c.Addr())
		}
		if !usesTLS(t, connect(t, c.DSN())) {
			t.Fatal("new session not encrypted")
		}
	})
}

func TestLocalClusterCloseLeavesNothing(t *testing.T) {
	pgharness.RequireLocal(t)
	c, err := pgharness.StartLocal(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	connect(t, c.DSN()) // a client still connected at Close
	dir, pid, addr := c.Dir(), c.PID(), c.Addr()
	if pid == 0 {
		t.Fatal("no server process")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	assertNothingLeft(t, dir, addr)
}

// A start interrupted at any point (the examples cancel on Ctrl-C) leaves nothing behind.
func TestLocalStartCancelledLeavesNothing(t *testing.T) {
	pgharness.RequireLocal(t)
	for _, after := range []time.Duration{0, 20 * time.Millisecond, 300 * time.Millisecond, time.Second} {
		t.Run(after.String(), func(t *testing.T) {
			before := localDirs(t)
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(after, cancel)
			c, err := pgharness.StartLocal(ctx)
			if err == nil {
				// Started before the cancel: closing must leave nothing either.
				dir, addr := c.Dir(), c.Addr()
				c.Close()
				assertNothingLeft(t, dir, addr)
				return
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("want context.Canceled, got %v", err)
			}
			for d := range localDirs(t) {
				if !before[d] {
					t.Errorf("folder %s left behind", d)
					assertNothingLeft(t, d, "")
				}
			}
		})
	}
}

// A process killed outright never runs its cleanup: its server stops by itself (Linux's
// parent-death signal) and the next start removes its folder.
func TestLocalClusterOfAKilledProcessIsSwept(t *testing.T) {
	pgharness.RequireLocal(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLocalCrashHelper$", "-test.short")
	cmd.Env = append(os.Environ(), "PGHARNESS_CRASH_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var dir, addr string
	var pid int
	for sc := bufio.NewScanner(out); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "cluster %s %s %d", &dir, &addr, &pid); err == nil {
			break
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper: want death by SIGKILL, got %v", err)
	}
	if dir == "" || pid == 0 {
		t.Fatal("helper printed no cluster")
	}
	if !waitGone(pid) {
		t.Errorf("the server (pid %d) of a killed process still runs", pid)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Logf("the killed process's folder was already swept (by a start in another test process?): %v", err)
	}
	startLocal(t) // sweeps
	assertNothingLeft(t, dir, addr)
}

// TestLocalCrashHelper is run by TestLocalClusterOfAKilledProcessIsSwept in a child process:
// it starts a cluster, says where, and kills itself.
func TestLocalCrashHelper(t *testing.T) {
	if os.Getenv("PGHARNESS_CRASH_HELPER") != "1" {
		t.Skip("helper of TestLocalClusterOfAKilledProcessIsSwept")
	}
	c, err := pgharness.StartLocal(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("cluster %s %s %d\n", c.Dir(), c.Addr(), c.PID())
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
}

func TestStartEmbeddedFallsBackToLocalBinariesWithoutDocker(t *testing.T) {
	pgharness.RequireLocal(t)
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	var notes []string
	db, err := pgharness.StartEmbedded(t.Context(), func(s string) { notes = append(notes, s) })
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.(*pgharness.Cluster); !ok {
		t.Fatalf("got %T (%v), want a local *pgharness.Cluster", db, db)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "nonexistent.sock") {
		t.Errorf("notes %q: want one saying the DOCKER_HOST engine did not answer", notes)
	}
	if !usesTLS(t, connect(t, db.DSN())) {
		t.Fatal("session is not encrypted")
	}
}

func TestStartEmbeddedWithNeitherNamesTheWaysOut(t *testing.T) {
	if testing.Short() {
		t.Skip("tries Docker")
	}
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	t.Setenv(pgharness.LocalBinEnv, t.TempDir())
	db, err := pgharness.StartEmbedded(t.Context(), nil)
	if err == nil {
		db.Close()
		t.Fatal("started a database")
	}
	var none *pgharness.NoDatabaseError
	if !errors.As(err, &none) || !errors.Is(err, pgharness.ErrNoLocalPostgres) {
		t.Fatalf("want a *NoDatabaseError wrapping ErrNoLocalPostgres, got %v", err)
	}
	// The message is the user's only guide here: it must name all three ways out.
	for _, way := range []string{"start Docker", "install PostgreSQL", "apt-get install postgresql", "set DATABASE_URL"} {
		if !strings.Contains(err.Error(), way) {
			t.Errorf("error does not say %q: %v", way, err)
		}
	}
}

func TestStartEmbeddedPrefersDocker(t *testing.T) {
	requireDocker(t)
	db, err := pgharness.StartEmbedded(t.Context(), func(s string) { t.Errorf("unexpected note %q", s) })
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.(*pgharness.Server); !ok {
		t.Fatalf("got %T (%v), want a Docker *pgharness.Server", db, db)
	}
	if !usesTLS(t, connect(t, db.DSN())) {
		t.Fatal("session is not encrypted")
	}
}

func TestFindLocalBinariesHonoursTheEnvironment(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(pgharness.LocalBinEnv, empty)
	if _, err := pgharness.FindLocalBinaries(); !errors.Is(err, pgharness.ErrNoLocalPostgres) {
		t.Fatalf("%s=%s (empty): want ErrNoLocalPostgres, got %v", pgharness.LocalBinEnv, empty, err)
	}
	fake := t.TempDir()
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(fake, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(pgharness.LocalBinEnv, fake)
	if got, err := pgharness.FindLocalBinaries(); err != nil || got != fake {
		t.Fatalf("got %q, %v; want %q", got, err, fake)
	}
}

func TestDatabaseConfigured(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing", nil, false},
		{"DATABASE_URL", map[string]string{"DATABASE_URL": "postgres://x"}, true},
		{"DB_HOST", map[string]string{"DB_HOST": "db"}, true},
		{"PGHOST", map[string]string{"PGHOST": "db"}, true},
		{"unrelated", map[string]string{"HOME": "/root"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pgharness.DatabaseConfigured(func(k string) string { return tt.env[k] }); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// requireDocker is [pgharness.Require] on this package's Docker server.
func requireDocker(t *testing.T) { pgharness.Require(t, srv) }

// assertNothingLeft checks that a cluster left no folder, no process and no listener behind.
func assertNothingLeft(t *testing.T, dir, addr string) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("folder %s still there (%v)", dir, err)
	}
	if pids := processesMentioning(dir); len(pids) > 0 {
		t.Errorf("processes %v still run from %s", pids, dir)
	}
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("port %s not free: %v", addr, err)
		} else {
			ln.Close()
		}
	}
}

// processesMentioning lists the processes whose command line mentions s (the postmaster's
// does: -D <dir>/data). Backends rename themselves, but die with their postmaster.
func processesMentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// localDirs lists this process's throwaway cluster folders (other test processes may be making
// their own meanwhile).
func localDirs(t *testing.T) map[string]bool {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("pgsteady-local-%d-*", os.Getpid())))
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, d := range m {
		set[d] = true
	}
	return set
}

// waitGone waits (at most a minute: this is not a timing assertion) for pid to exit.
func waitGone(pid int) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			return true
		}
	}
	return false
}

// procUID is the real uid of a process, from /proc.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatal("no Uid in /proc status")
	return -1
}
