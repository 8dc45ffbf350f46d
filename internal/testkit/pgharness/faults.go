package pgharness

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/moby/moby/client"
	tcexec "github.com/testcontainers/testcontainers-go/exec"
)

// Shell preamble for commands run inside the container (as user postgres).
const shellEnv = `bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); data=/var/lib/pgsteady/data; run=/run/pgsteady; `

// TerminateBackends kills every client backend but its own with pg_terminate_backend, as a
// compute restart or an administrator does: each victim gets FATAL 57P01 and its socket closes.
// PgBouncer's server connections are client backends too and die with the rest. It returns how
// many backends were signalled.
func (s *Server) TerminateBackends(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, s.AdminDSN())
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

// StopServer shuts the PostgreSQL server process down (fast shutdown: clients get 57P01) and keeps
// it down until [Server.StartServer]. The container, PgBouncer and the published ports stay, so
// connection attempts are refused (or, through PgBouncer, fail) rather than time out.
func (s *Server) StopServer(ctx context.Context) error {
	return s.exec(ctx, shellEnv+`touch "$run/down" && "$bin/pg_ctl" stop -D "$data" -m fast -w -t 60 >/dev/null`)
}

// StartServer lets the server process start again after [Server.StopServer] and waits until it
// accepts connections.
func (s *Server) StartServer(ctx context.Context) error {
	if err := s.exec(ctx, shellEnv+`rm -f "$run/down"`); err != nil {
		return err
	}
	return s.waitAccepting(ctx)
}

// Restart stops the server process, keeps it down for down (0 restarts at once; a few seconds
// plays a cold start), starts it again on the same published port and waits until it accepts
// connections. ctx bounds the whole restart.
func (s *Server) Restart(ctx context.Context, down time.Duration) error {
	if err := s.StopServer(ctx); err != nil {
		return err
	}
	t := time.NewTimer(down)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	return s.StartServer(ctx)
}

func (s *Server) waitAccepting(ctx context.Context) error {
	for {
		err := s.exec(ctx, shellEnv+`"$bin/pg_isready" -q -h "$run" -p 5432`)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgharness: server did not come back: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SetIdleSessionTimeout sets the server-wide idle_session_timeout (0 turns it off) and reloads the
// configuration, so that the server closes sessions idle for longer than d with FATAL 57P05, as
// the seed's database did. It persists across restarts until set back to 0.
func (s *Server) SetIdleSessionTimeout(ctx context.Context, d time.Duration) error {
	stmt := "ALTER SYSTEM RESET idle_session_timeout"
	if d > 0 {
		stmt = fmt.Sprintf("ALTER SYSTEM SET idle_session_timeout = '%dms'", d.Milliseconds())
	}
	return s.admin(ctx, stmt, "SELECT pg_reload_conf()")
}

// Pause freezes every process in the container (docker pause): the server, like a hung database,
// accepts bytes into its socket buffers but never answers.
// The cgroup freezer can fail to freeze a process caught in the kernel ("unable to freeze",
// seen on a loaded machine); Pause then tries again, a few times.
func (s *Server) Pause(ctx context.Context) error {
	var err error
	for range 5 {
		if _, err = s.docker.ContainerPause(ctx, s.ctr.GetContainerID(), client.ContainerPauseOptions{}); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "unable to freeze") {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("pgharness: pause: %w", err)
}

// Unpause undoes [Server.Pause].
func (s *Server) Unpause(ctx context.Context) error {
	_, err := s.docker.ContainerUnpause(ctx, s.ctr.GetContainerID(), client.ContainerUnpauseOptions{})
	if err != nil {
		return fmt.Errorf("pgharness: unpause: %w", err)
	}
	return nil
}

// exec runs a shell command in the container and fails on a non-zero exit, with its output.
func (s *Server) exec(ctx context.Context, script string) error {
	code, out, err := s.ctr.Exec(ctx, []string{"sh", "-c", script}, tcexec.Multiplexed())
	if err != nil {
		return fmt.Errorf("pgharness: exec: %w", err)
	}
	if code != 0 {
		b, _ := io.ReadAll(out)
		return fmt.Errorf("pgharness: %q exited %d: %s", script[len(shellEnv):], code, strings.TrimSpace(string(b)))
	}
	return nil
}
