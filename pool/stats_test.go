package pool_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"testing/synctest"

	"github.com/pgsteady/pgsteady/config"
	"github.com/pgsteady/pgsteady/internal/pgfake"
)

func TestDebugHandlerServesStatsWithSQLAlchemysKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, nil)
		p := fakePool(t, s, func(c *config.Config) { c.Size, c.Overflow = 4, 6 })
		rec := httptest.NewRecorder()
		p.DebugHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pool", nil))
		var got map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if got["size"] != 4.0 || got["max"] != 10.0 || got["checked_in"] != 1.0 || got["checked_out"] != 0.0 {
			t.Fatalf("DebugHandler: %s", rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("Cache-Control %q", rec.Header().Get("Cache-Control"))
		}
	})
}

func TestStdDBRunsOnThePoolsConnectionsAndClosesWithIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := fakeServer(t, func(q pgfake.Query) pgfake.Reply {
			if q.SQL == "SELECT 'x'" {
				return oneRow
			}
			return pgfake.Reply{}
		})
		p := fakePool(t, s, nil)
		db := p.StdDB()
		var v string
		if err := db.QueryRowContext(t.Context(), "SELECT 'x'").Scan(&v); err != nil || v != "x" {
			t.Fatalf("through database/sql: %q, %v", v, err)
		}
		if got := s.Accepted(); got != 1 {
			t.Fatalf("the server saw %d connections, want the pool's one", got)
		}
		p.Close()
		if err := db.PingContext(t.Context()); err == nil {
			t.Fatal("the *sql.DB still works after the pool's Close")
		}
	})
}
