package retry_test

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/internal/testkit/faultproxy"
	"github.com/pgsteady/pgsteady/internal/testkit/pgharness"
	"github.com/pgsteady/pgsteady/retry"
)

// integration returns the server and a context bounding the test.
func integration(t *testing.T) (*pgharness.Server, context.Context) {
	t.Helper()
	s := pgharness.Require(t, srv)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return s, ctx
}

func connectPgx(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("first query: %v", err)
	}
	return conn
}

// wantClass checks Classify(err), wrapped or not, and logs the error, whose
// exact form depends on timing.
func wantClass(t *testing.T, err error, want retry.Class) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one of class %v", want)
	}
	t.Logf("error (%T): %v", err, err)
	testhelp.CheckClass(t, err, want)
}

func TestIntegrationKilledBackend(t *testing.T) {
	s, ctx := integration(t)
	plain := connectPgx(ctx, t, s.DSN())
	viaDo := connectPgx(ctx, t, s.DSN())

	n, err := s.TerminateBackends(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("%d backends terminated, want at least 2", n)
	}
	// The backend died between two statements, but the client cannot know
	// that its next statement was not the one in flight.
	_, err = plain.Exec(ctx, "SELECT 1")
	wantClass(t, err, retry.ConnLost)

	// With the default policy (Safe) Do does not retry it: one call, and the
	// error comes back as it was.
	calls := 0
	err = retry.Do(ctx, retry.DefaultPolicy(), func(ctx context.Context) error {
		calls++
		_, err := viaDo.Exec(ctx, "SELECT 1")
		return err
	})
	if calls != 1 || retry.Classify(err) != retry.ConnLost {
		t.Errorf("Do with Safe: %d calls, err %v; want 1 call and a conn-lost error", calls, err)
	}
	var rerr *retry.Error
	if errors.As(err, &rerr) {
		t.Errorf("Do with Safe wrapped a first-attempt error it does not retry: %v", err)
	}

	// Once pgx knows the connection is closed, it refuses statements before
	// sending anything: NotSent, but retrying on the same *pgx.Conn cannot
	// succeed. A retried function must get its connection inside.
	_, err = plain.Exec(ctx, "SELECT 1")
	wantClass(t, err, retry.NotSent)
}

func TestIntegrationRestartedServer(t *testing.T) {
	s, ctx := integration(t)
	conn := connectPgx(ctx, t, s.DSN())

	if err := s.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "SELECT 1")
	wantClass(t, err, retry.ConnLost)

	// A read may be retried after that; each attempt opens its own
	// connection, and the restarted server answers.
	got, err := retry.DoValue(ctx, retry.DefaultPolicy().WithRetryOn(retry.Idempotent), func(ctx context.Context) (int, error) {
		c, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			return 0, err
		}
		defer c.Close(context.Background())
		var one int
		err = c.QueryRow(ctx, "SELECT 1").Scan(&one)
		return one, err
	})
	if err != nil || got != 1 {
		t.Fatalf("read after restart = %d, %v", got, err)
	}
}

func TestIntegrationServerDown(t *testing.T) {
	s, ctx := integration(t)
	if err := s.StopServer(ctx); err != nil {
		t.Fatal(err)
	}
	started := false
	t.Cleanup(func() {
		if !started {
			if err := s.StartServer(context.Background()); err != nil {
				t.Errorf("restart the server: %v", err)
			}
		}
	})

	_, err := pgx.Connect(ctx, s.DSN())
	wantClass(t, err, retry.NotSent)
	var cerr *pgconn.ConnectError
	if !errors.As(err, &cerr) {
		t.Errorf("want a *pgconn.ConnectError, got %T", err)
	}

	// Do with the default policy rides through the outage: the server comes
	// back while it retries, and every failure it retried was NotSent.
	var (
		mu      sync.Mutex
		classes []retry.Class
	)
	p := retry.DefaultPolicy()
	p.OnRetry = func(_ int, _ error, class retry.Class, _ time.Duration) {
		mu.Lock()
		classes = append(classes, class)
		mu.Unlock()
	}
	startErr := make(chan error, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		startErr <- s.StartServer(ctx)
	}()
	err = retry.Do(ctx, p, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, s.DSN())
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "SELECT 1")
		return err
	})
	if serr := <-startErr; serr != nil {
		t.Fatalf("start the server: %v", serr)
	}
	started = true
	if err != nil {
		t.Fatalf("Do did not ride through the outage: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(classes) == 0 {
		t.Error("Do succeeded without retrying: the server was not down")
	}
	for i, c := range classes {
		if c != retry.NotSent {
			t.Errorf("retry %d was for a %v error, want not-sent", i+1, c)
		}
	}
}

func TestIntegrationResetWhileIdle(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	proxy := faultproxy.Start(t, s.Addr())
	conn := connectPgx(ctx, t, pgharness.WithAddr(s.DSN(), proxy.Addr()))

	if n := proxy.ResetAll(); n != 1 {
		t.Fatalf("reset %d flows, want 1", n)
	}
	// The RST arrived before the next statement: writing it fails at once,
	// with nothing sent.
	_, err := conn.Exec(ctx, "SELECT 1")
	wantClass(t, err, retry.NotSent)
	if !pgconn.SafeToRetry(err) {
		t.Errorf("pgconn.SafeToRetry(%v) = false", err)
	}
}

func TestIntegrationResetWithQueryInFlight(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	proxy := faultproxy.Start(t, s.Addr())
	conn := connectPgx(ctx, t, pgharness.WithAddr(s.DSN(), proxy.Addr()))

	// The server receives the statement and runs it, but its answer never
	// arrives; then the connection is reset. The client cannot tell whether
	// the statement ran: it did.
	proxy.StallResponses()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT 1")
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the statement reach the server
	proxy.ResetAll()
	wantClass(t, <-done, retry.ConnLost)
}

func TestIntegrationWrongPassword(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	u, err := url.Parse(s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), "not-"+s.Password())

	_, err = pgx.Connect(ctx, u.String())
	wantClass(t, err, retry.Permanent)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Errorf("want SQLSTATE 28P01, got %v", err)
	}

	// Do gives it back after one attempt, even though it is a connect error.
	calls := 0
	err = retry.Do(ctx, retry.DefaultPolicy(), func(ctx context.Context) error {
		calls++
		c, err := pgx.Connect(ctx, u.String())
		if err == nil {
			c.Close(ctx)
		}
		return err
	})
	if calls != 1 || !errors.As(err, &pgErr) {
		t.Errorf("Do: %d calls, err %v; want 1 call and the 28P01 error", calls, err)
	}
}

func TestIntegrationSyntaxError(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	conn := connectPgx(ctx, t, s.DSN())

	_, err := conn.Exec(ctx, "SELEC 1")
	wantClass(t, err, retry.Permanent)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" {
		t.Errorf("want SQLSTATE 42601, got %v", err)
	}
}

func TestIntegrationSerializationFailure(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	setup := connectPgx(ctx, t, dsn)
	if _, err := setup.Exec(ctx, `CREATE TABLE licences (id int PRIMARY KEY, points int NOT NULL);
		INSERT INTO licences VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	mine := connectPgx(ctx, t, dsn)
	other := connectPgx(ctx, t, dsn)

	// addPoint runs a whole SERIALIZABLE transaction. On its first run a
	// concurrent transaction updates the same row after this one took its
	// snapshot and commits first, so PostgreSQL aborts this one with 40001.
	attempts := 0
	var firstErr error
	addPoint := func(ctx context.Context) error {
		attempts++
		tx, err := mine.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		var points int
		if err := tx.QueryRow(ctx, "SELECT points FROM licences WHERE id = 1").Scan(&points); err != nil {
			return err
		}
		if attempts == 1 {
			if _, err := other.Exec(ctx, "UPDATE licences SET points = points + 10 WHERE id = 1"); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE licences SET points = $1 WHERE id = 1", points+1); err != nil {
			if attempts == 1 {
				firstErr = err
			}
			return err
		}
		return tx.Commit(ctx)
	}

	err = retry.Do(ctx, retry.DefaultPolicy().WithRetryOn(retry.Transaction), addPoint)
	if err != nil {
		t.Fatalf("Do with Transaction: %v", err)
	}
	wantClass(t, firstErr, retry.Conflict)
	var pgErr *pgconn.PgError
	if !errors.As(firstErr, &pgErr) || pgErr.Code != "40001" {
		t.Errorf("want SQLSTATE 40001, got %v", firstErr)
	}
	if attempts != 2 {
		t.Errorf("the transaction ran %d times, want 2", attempts)
	}
	var points int
	if err := setup.QueryRow(ctx, "SELECT points FROM licences WHERE id = 1").Scan(&points); err != nil {
		t.Fatal(err)
	}
	if points != 11 {
		t.Errorf("points = %d, want 11: both updates, each once", points)
	}
}

func TestIntegrationStaleCachedPlan(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	conn := connectPgx(ctx, t, dsn) // pgx's default mode caches prepared statements
	if _, err := conn.Exec(ctx, `CREATE TABLE licences (id int PRIMARY KEY, holder text NOT NULL);
		INSERT INTO licences VALUES (1, 'Ada')`); err != nil {
		t.Fatal(err)
	}
	read := func(ctx context.Context) error {
		rows, err := conn.Query(ctx, "SELECT * FROM licences WHERE id = $1", 1)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	}
	if err := read(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := connectPgx(ctx, t, dsn).Exec(ctx, "ALTER TABLE licences ADD COLUMN points int NOT NULL DEFAULT 0"); err != nil {
		t.Fatal(err)
	}

	// The prepared statement's result type changed under it: PostgreSQL
	// refuses to run it, and pgx drops it from its cache.
	err = read(ctx)
	wantClass(t, err, retry.Conflict)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Fatalf("want SQLSTATE 0A000, got %v", err)
	}
	t.Logf("routine %q", pgErr.Routine)
	if retry.Discard(err) {
		t.Error("Discard: the connection is fine after a stale plan")
	}
	// The next attempt, on the same connection, prepares it again.
	calls := 0
	err = retry.Do(ctx, retry.DefaultPolicy(), func(ctx context.Context) error {
		calls++
		return read(ctx)
	})
	if err != nil || calls != 1 {
		t.Errorf("read after the stale plan: %d calls, %v", calls, err)
	}
}

func TestIntegrationAutocommitSerializationFailure(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	setup := connectPgx(ctx, t, dsn)
	if _, err := setup.Exec(ctx, `CREATE TABLE licences (id int PRIMARY KEY, points int NOT NULL);
		INSERT INTO licences VALUES (1, 0)`); err != nil {
		t.Fatal(err)
	}
	other := connectPgx(ctx, t, dsn)
	mine := connectPgx(ctx, t, dsn)
	// Every statement of mine runs alone, in its own REPEATABLE READ
	// transaction.
	if _, err := mine.Exec(ctx, "SET default_transaction_isolation = 'repeatable read'"); err != nil {
		t.Fatal(err)
	}

	// other holds the row; my UPDATE takes its snapshot, waits for the lock,
	// and when other commits, PostgreSQL aborts it with 40001.
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE licences SET points = points + 10 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	var firstErr error
	done := make(chan error, 1)
	go func() {
		done <- retry.Do(ctx, retry.DefaultPolicy(), func(ctx context.Context) error {
			attempts++
			_, err := mine.Exec(ctx, "UPDATE licences SET points = points + 1 WHERE id = $1", 1)
			if attempts == 1 {
				firstErr = err
			}
			return err
		})
	}()
	waitForLockWait(ctx, t, setup)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Do with the default policy: %v", err)
	}
	wantClass(t, firstErr, retry.Conflict)
	var pgErr *pgconn.PgError
	if !errors.As(firstErr, &pgErr) || pgErr.Code != "40001" {
		t.Errorf("want SQLSTATE 40001, got %v", firstErr)
	}
	if attempts != 2 {
		t.Errorf("the statement ran %d times, want 2", attempts)
	}
	var points int
	if err := setup.QueryRow(ctx, "SELECT points FROM licences WHERE id = 1").Scan(&points); err != nil {
		t.Fatal(err)
	}
	if points != 11 {
		t.Errorf("points = %d, want 11: both updates, each once", points)
	}
}

// waitForLockWait waits until some backend of the database waits for a lock.
func waitForLockWait(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	for {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("no backend waits for a lock")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A database made read-only (ALTER DATABASE ... SET default_transaction_read_only) answers
// writes with the same 25006 a demoted primary sends. retry alone cannot tell the two apart, so
// it does not retry: a retry storm on an application's read-only database is worse than one
// error on a failover, which package pool confirms with the server before it retries.
func TestIntegrationReadOnlyIsNotRetriedUnconfirmed(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	dsn, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	setup := connectPgx(ctx, t, dsn)
	if _, err := setup.Exec(ctx, `CREATE TABLE uploads (key text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var db string
	if err := setup.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_read_only = on"); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	err = retry.Do(ctx, retry.DefaultPolicy(), func(ctx context.Context) error {
		attempts++
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, "INSERT INTO uploads VALUES ($1)", "k1")
		if err != nil && retry.Discard(err) {
			t.Errorf("Discard(%v) = true: the connection is as good as before", err)
		}
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" {
		t.Fatalf("Do: %v, want SQLSTATE 25006", err)
	}
	if attempts != 1 {
		t.Errorf("%d attempts, want 1", attempts)
	}
	wantClass(t, err, retry.Permanent)
	if retry.MayRetryLater(err) {
		t.Errorf("MayRetryLater(%v) = true, want false", err)
	}
	var n int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM uploads").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows, want 0: the refused INSERT did not apply", n)
	}
}

func TestIntegrationIdleTimeouts(t *testing.T) {
	s, ctx := integration(t)
	t.Parallel()
	tests := []struct {
		name  string
		setup string
		code  string
	}{
		{"idle_session_timeout", "SET idle_session_timeout = '100ms'", "57P05"},
		{"idle_in_transaction_session_timeout", "SET idle_in_transaction_session_timeout = '100ms'; BEGIN", "25P03"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn := connectPgx(ctx, t, s.DSN())
			if _, err := conn.Exec(ctx, tt.setup); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond) // let the server end the idle session
			_, err := conn.Exec(ctx, "SELECT 1")
			// The server ended the session before reading the statement: it
			// never ran, whatever form the error takes.
			wantClass(t, err, retry.NotSent)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code != tt.code {
				t.Errorf("SQLSTATE %s, want %s", pgErr.Code, tt.code)
			}
			if !retry.Discard(err) && !conn.IsClosed() {
				t.Errorf("the connection is open and Discard(%v) = false", err)
			}
		})
	}
}
