package loadgen

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// terminateAll kills every client backend but the caller's, as an administrator or a Neon
// compute restart does: each victim's client gets FATAL 57P01 and a closed socket.
const terminateAll = `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
	WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`

// checkChaosDSN refuses a DSN that could reach beyond this machine.
func checkChaosDSN(dsn string) error {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("loadgen: chaos DSN: %w", err)
	}
	hosts := []string{cfg.Host}
	for _, fb := range cfg.Fallbacks {
		hosts = append(hosts, fb.Host)
	}
	for _, h := range hosts {
		if !strings.HasPrefix(h, "/") && !isLoopback(h) {
			return fmt.Errorf("loadgen: chaos DSN host %q is not a loopback address (use -allow-remote)", h)
		}
	}
	return nil
}

// runChaos terminates all client backends every interval until ctx is done, counting into
// st. Each sweep uses a fresh connection, so that a sweep never depends on the previous one.
// st may be read once runChaos has returned.
func runChaos(ctx context.Context, dsn string, every time.Duration, st *ChaosStats) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := sweep(ctx, dsn)
		if err != nil && !ended(ctx) {
			// One more try: on a loaded machine a connect can fail now and then (a dropped SYN
			// costs a second); the sweep's job is to kill backends, not to test connecting.
			n, err = sweep(ctx, dsn)
		}
		if ended(ctx) {
			return
		}
		st.Rounds++
		st.Killed += n
		if err != nil {
			st.Errors++
			st.Last = err
		}
	}
}

// sweepTimeout bounds one sweep: connecting as the superuser (TLS and SCRAM, which take
// seconds on a loaded machine) and terminating the backends.
const sweepTimeout = 20 * time.Second

func sweep(ctx context.Context, dsn string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, terminateAll).Scan(&n)
	return n, err
}

// ended reports whether the run is over: ctx is done, or its deadline has passed (a dial cut by
// the deadline returns an i/o timeout a moment before ctx itself reports it is done).
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}
