package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgsteady/pgsteady/internal/testhelp"
)

// The package documentation's table of connection string keys is keyRules, row for row.
func TestDocTableIsTheKeyTable(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	const header = "key                            sets                   accepts                             from"
	lines := strings.Split(string(src), "\n")
	start := slices.Index(lines, "//\t"+header)
	if start < 0 {
		t.Fatalf("doc.go has no key table with the header %q", header)
	}
	var doc []string
	for _, l := range lines[start+1:] {
		row, ok := strings.CutPrefix(l, "//\t")
		if !ok {
			break
		}
		doc = append(doc, row)
	}
	var want []string
	for _, k := range keyRules {
		want = append(want, strings.TrimRight(fmt.Sprintf("%-31s%-23s%-36s%s", k.key, k.field, k.limit, k.origin), " "))
	}
	if !slices.Equal(doc, want) {
		t.Errorf("doc.go's key table differs from keyRules; it should read:\n\t%s", strings.Join(want, "\n\t"))
	}
}

// Every key Parse reads is refused with its own limit when its value is bad, and the error
// names the key and shows the value.
func TestKeyRulesRefuseBadValues(t *testing.T) {
	testhelp.ClearEnv(t)
	for _, k := range keyRules {
		t.Run(k.key, func(t *testing.T) {
			_, err := Parse(remote + "?" + k.key + "=bad%20value")
			e := asError(t, err)
			if e.Field != k.key || e.Value != "bad value" || e.Limit != k.limit {
				t.Fatalf("Parse(...%s=bad value) = %v, want field %s, value %q, limit %q", k.key, err, k.key, "bad value", k.limit)
			}
		})
	}
}

// Every key Parse reads is taken out of the connection string, even when its value is the
// default, and keys appear in keyRules once.
func TestKeyRulesAreRemoved(t *testing.T) {
	testhelp.ClearEnv(t)
	good := map[string]string{
		"pool_size": "10", "max_overflow": "20", "pool_timeout": "30", "pool_recycle": "300",
		"pool_pre_ping": "idle", "pool_max_conns": "30", "pool_min_conns": "0",
		"pool_min_idle_conns": "0", "pool_max_conn_lifetime": "5m", "pool_max_conn_lifetime_jitter": "30s",
		"pool_max_conn_idle_time": "2m", "pool_overflow_idle_time": "30s", "pool_health_check_period": "30s", "pool_ping_timeout": "2s",
		"pooler": "none", "pgsteady_keep_channel_binding": "false", "pgsteady_allow_insecure": "false",
		"channel_binding": "prefer",
	}
	seen := map[string]bool{}
	var params []string
	for _, k := range keyRules {
		if seen[k.key] {
			t.Errorf("%s is in keyRules twice", k.key)
		}
		seen[k.key] = true
		v, ok := good[k.key]
		if !ok {
			t.Fatalf("no good value for %s in this test", k.key)
		}
		params = append(params, k.key+"="+v)
	}
	c := mustParse(t, remote+"?"+strings.Join(params, "&"))
	if c.st.conn != remote+"?sslmode=require" {
		t.Errorf("cleaned string %q, want only sslmode added", c.st.shown)
	}
	if c.Size != DefaultSize || c.Overflow != DefaultOverflow || c.Recycle != DefaultRecycle || c.RecycleJitter != DefaultRecycleJitter {
		t.Errorf("defaults written out changed the Config: %v", c)
	}
}

func TestOverflowIdleTimeoutStaysWithinAShorterIdleTimeout(t *testing.T) {
	c, err := Parse("postgres://u@db.example.com/d?sslmode=require&pool_max_conn_idle_time=20s")
	if err != nil {
		t.Fatal(err)
	}
	if c.OverflowIdleTimeout != 20*time.Second {
		t.Fatalf("OverflowIdleTimeout %v, want the shorter IdleTimeout 20s", c.OverflowIdleTimeout)
	}
	if _, err := Parse("postgres://u@db.example.com/d?sslmode=require&pool_max_conn_idle_time=20s&pool_overflow_idle_time=30s"); err == nil {
		t.Fatal("an explicit OverflowIdleTimeout longer than IdleTimeout was accepted")
	}
}
