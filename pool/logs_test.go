package pool_test

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/testhelp"
	"github.com/pgsteady/pgsteady/pool"
)

// logLines returns the JSON lines in logs whose message is msg, decoded.
func logLines(t *testing.T, logs *testhelp.SyncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// A storm of retries is summarised: at most one line a second of each message, the next one
// saying how many were left out.
func TestRetriesAreLoggedAtMostOnceASecondWithACountOfTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		s.Refuse(startingUp)
		var logs testhelp.SyncBuffer
		p := fakePool(t, s, func(c *config.Config) { c.LazyStart, c.AcquireTimeout = true, 3*time.Second },
			pool.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
		if _, err := p.Exec(t.Context(), "SELECT 'x'"); err == nil {
			t.Fatal("Exec on a server that stays down succeeded")
		}
		retries := p.Stats().Retries.NotSent
		lines := logLines(t, &logs, "pgsteady: retrying")
		suppressed := 0.0
		for _, l := range lines {
			if n, ok := l["suppressed"].(float64); ok {
				suppressed += n
			}
		}
		if len(lines) == 0 || len(lines) > 4 || int64(len(lines))+int64(suppressed) > retries || suppressed == 0 {
			t.Fatalf("%d retries in 3s logged as %d lines saying %v suppressed; want at most one a second, with the rest counted", retries, len(lines), suppressed)
		}
	})
}
