package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Connection string keys that pgsteady reads and removes; see the package documentation.
const (
	keyPoolSize          = "pool_size"
	keyMaxOverflow       = "max_overflow"
	keyPoolTimeout       = "pool_timeout"
	keyPoolRecycle       = "pool_recycle"
	keyPoolPrePing       = "pool_pre_ping"
	keyMaxConns          = "pool_max_conns"
	keyMinConns          = "pool_min_conns"
	keyMinIdleConns      = "pool_min_idle_conns"
	keyMaxConnLifetime   = "pool_max_conn_lifetime"
	keyLifetimeJitter    = "pool_max_conn_lifetime_jitter"
	keyMaxConnIdleTime   = "pool_max_conn_idle_time"
	keyHealthCheckPeriod = "pool_health_check_period"
	keyPingTimeout       = "pool_ping_timeout"
	keyPooler            = "pooler"
	keyKeepChannelBind   = "pgsteady_keep_channel_binding"
	keyAllowInsecure     = "pgsteady_allow_insecure"
	keyChannelBinding    = "channel_binding"
)

var consumedKeys = []string{
	keyPoolSize, keyMaxOverflow, keyPoolTimeout, keyPoolRecycle, keyPoolPrePing,
	keyMaxConns, keyMinConns, keyMinIdleConns, keyMaxConnLifetime, keyLifetimeJitter,
	keyMaxConnIdleTime, keyHealthCheckPeriod, keyPingTimeout, keyPooler,
	keyKeepChannelBind, keyAllowInsecure, keyChannelBinding,
}

// Parse reads a connection string, a postgres:// or postgresql:// URL or a keyword/value
// string, and returns a validated Config holding the defaults, the pool options found in the
// string, and the rest of the string for pgx. Pieces the string lacks are taken the way pgx
// takes them: from the PG* environment variables (PGHOST, PGUSER, PGPASSWORD, PGSSLMODE, ...)
// and libpq's defaults; Parse("") takes everything from there. See the package documentation
// for the keys it reads and what it changes.
//
// Every problem is an *[Error] naming the key, the value and the limit; no error contains the
// password.
func Parse(connString string) (*Config, error) {
	d, err := parseDSN(connString)
	if err != nil {
		// The string does not split; let pgx say why (its error does not quote the string
		// here: we replace it).
		sec := d.secrets()
		_, perr := pgconn.ParseConfig(connString)
		if perr == nil {
			perr = errors.New("invalid connection string")
		}
		return nil, parseError(perr, "…", sec)
	}
	sec := d.secrets()
	c, err := parse(d, &sec)
	if err != nil {
		return nil, sec.redactError(err)
	}
	return c, nil
}

func parse(d *dsn, sec *secrets) (*Config, error) {
	c := defaults()
	st := &state{}
	if err := c.applyKeys(d, st); err != nil {
		return nil, err
	}

	pc, err := pgxpool.ParseConfig(d.String())
	if err != nil {
		return nil, parseError(err, d.redacted(), *sec)
	}
	sec.add(pc.ConnConfig.Password)
	hosts := hostsOf(&pc.ConnConfig.Config)

	if !st.poolerGiven {
		for _, h := range hosts {
			if strings.Contains(strings.ToLower(h.host), "-pooler.") {
				c.Pooler = PoolerTransaction
			}
		}
	}

	if sslmodeUnset(d) {
		for _, h := range hosts {
			if !h.local {
				d.add("sslmode", "require")
				pc, err = pgxpool.ParseConfig(d.String())
				if err != nil {
					return nil, parseError(err, d.redacted(), *sec)
				}
				hosts = hostsOf(&pc.ConnConfig.Config)
				break
			}
		}
	}
	st.insecure = insecure(hosts)

	if pc.ConnConfig.ConnectTimeout > 0 {
		c.ConnectTimeout = pc.ConnConfig.ConnectTimeout
	}
	st.execMode, _ = d.lookup("default_query_exec_mode")
	st.conn = d.String()
	st.shown = d.redacted()
	st.secrets = *sec
	c.st = st
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// sslmodeUnset reports whether nothing chooses an sslmode: no sslmode (or URL ssl=) key, no
// PGSSLMODE, and no service file (which could set one).
func sslmodeUnset(d *dsn) bool {
	if d.has("sslmode") || (d.url && d.has("ssl")) || d.has("service") {
		return false
	}
	return os.Getenv("PGSSLMODE") == "" && os.Getenv("PGSERVICE") == ""
}

// applyKeys reads and removes pgsteady's keys from d.
func (c *Config) applyKeys(d *dsn, st *state) error {
	v := make(map[string]string)
	for _, k := range consumedKeys {
		val, ok, bad := d.take(k)
		if bad {
			return &Error{Field: k, Limit: "valid percent-encoding"}
		}
		if ok {
			v[k] = val
		}
	}
	for _, p := range d.params {
		if strings.HasPrefix(p.key, "pool_") || strings.HasPrefix(p.key, "pgsteady_") {
			return &Error{Field: p.key, Value: p.value, Limit: "a known option (see package config)"}
		}
	}
	if err := c.applySize(v); err != nil {
		return err
	}

	var err error
	if s, ok := v[keyPoolTimeout]; ok {
		if c.AcquireTimeout, err = parseSeconds(keyPoolTimeout, s); err != nil {
			return err
		}
	}
	if err := c.applyRecycle(v); err != nil {
		return err
	}
	for _, o := range []struct {
		key string
		dst *time.Duration
	}{
		{keyMaxConnIdleTime, &c.IdleTimeout},
		{keyHealthCheckPeriod, &c.HealthCheckPeriod},
		{keyPingTimeout, &c.PingTimeout},
	} {
		if s, ok := v[o.key]; ok {
			if *o.dst, err = parseDuration(o.key, s, false); err != nil {
				return err
			}
		}
	}
	if s, ok := v[keyPoolPrePing]; ok {
		switch strings.ToLower(s) {
		case "idle":
			c.PrePing = PrePingIdle
		case "always":
			c.PrePing = PrePingAlways
		case "never":
			c.PrePing = PrePingNever
		default:
			b, err := strconv.ParseBool(s)
			if err != nil {
				return &Error{Field: keyPoolPrePing, Value: s, Limit: "true, false, idle, always or never"}
			}
			c.PrePing = PrePingNever
			if b {
				c.PrePing = PrePingAlways
			}
		}
	}
	if s, ok := v[keyPooler]; ok {
		st.poolerGiven = true
		switch strings.ToLower(s) {
		case "transaction":
			c.Pooler = PoolerTransaction
		case "none", "session":
			c.Pooler = PoolerNone
		default:
			return &Error{Field: keyPooler, Value: s, Limit: "transaction, session or none"}
		}
	}
	for _, o := range []struct {
		key string
		dst *bool
	}{
		{keyKeepChannelBind, &c.KeepChannelBinding},
		{keyAllowInsecure, &c.AllowInsecure},
	} {
		if s, ok := v[o.key]; ok {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return &Error{Field: o.key, Value: s, Limit: "true or false"}
			}
			*o.dst = b
		}
	}
	if s, ok := v[keyChannelBinding]; ok {
		switch s {
		case "disable", "prefer", "require":
		default:
			return &Error{Field: keyChannelBinding, Value: s, Limit: "disable, prefer or require"}
		}
		st.channelBinding = s
		if !c.KeepChannelBinding {
			c.Warnings = append(c.Warnings, fmt.Sprintf(
				"channel_binding=%s removed from the connection string (pgx then uses PGCHANNELBINDING or \"prefer\"); "+
					"set %s=true or Config.KeepChannelBinding to keep it", s, keyKeepChannelBind))
		}
	}
	return nil
}

// applySize sets Size, Overflow and WarmUp from pool_size, max_overflow, pool_max_conns,
// pool_min_conns and pool_min_idle_conns.
func (c *Config) applySize(v map[string]string) error {
	num := func(key string, min int) (int, bool, error) {
		s, ok := v[key]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil || int(n) < min {
			return 0, true, &Error{Field: key, Value: s, Limit: fmt.Sprintf("an integer >= %d", min)}
		}
		return int(n), true, nil
	}
	size, hasSize, err := num(keyPoolSize, 1)
	if err != nil {
		return err
	}
	over, hasOver, err := num(keyMaxOverflow, 0)
	if err != nil {
		return err
	}
	maxc, hasMax, err := num(keyMaxConns, 1)
	if err != nil {
		return err
	}
	if hasSize {
		c.Size = size
	}
	if hasOver {
		c.Overflow = over
	}
	if hasMax {
		bad := func(limit string) error {
			return &Error{Field: keyMaxConns, Value: strconv.Itoa(maxc), Limit: limit}
		}
		switch {
		case hasSize && hasOver:
			if size+over != maxc {
				return bad(fmt.Sprintf("pool_size + max_overflow (%d)", size+over))
			}
		case hasSize:
			if maxc < size {
				return bad(fmt.Sprintf(">= pool_size (%d)", size))
			}
			c.Overflow = maxc - size
		case hasOver:
			if maxc <= over {
				return bad(fmt.Sprintf("> max_overflow (%d)", over))
			}
			c.Size = maxc - over
		default:
			c.Size = min(DefaultSize, maxc)
			c.Overflow = maxc - c.Size
		}
	}
	if s, ok := v[keyMinConns]; ok {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		switch {
		case err == nil && n == 0:
			c.WarmUp = false
		case err == nil && int(n) == c.Size:
			c.WarmUp = true
		default:
			return &Error{Field: keyMinConns, Value: s, Limit: fmt.Sprintf("0 or the pool size (%d)", c.Size)}
		}
	}
	if s, ok := v[keyMinIdleConns]; ok {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32); err != nil || n != 0 {
			return &Error{Field: keyMinIdleConns, Value: s, Limit: "0 (keep connections with pool_min_conns)"}
		}
	}
	return nil
}

// applyRecycle sets Recycle and RecycleJitter from pool_recycle, pool_max_conn_lifetime and
// pool_max_conn_lifetime_jitter.
func (c *Config) applyRecycle(v map[string]string) error {
	var (
		recycle time.Duration
		set     bool
		err     error
	)
	if s, ok := v[keyPoolRecycle]; ok {
		if recycle, err = parseSeconds(keyPoolRecycle, s); err != nil {
			return err
		}
		set = true
	}
	if s, ok := v[keyMaxConnLifetime]; ok {
		d, err := parseDuration(keyMaxConnLifetime, s, false)
		if err != nil {
			return err
		}
		if set && d != recycle {
			return &Error{Field: keyMaxConnLifetime, Value: s,
				Limit: fmt.Sprintf("equal to pool_recycle (%s)", recycle)}
		}
		recycle, set = d, true
	}
	if set {
		c.Recycle = recycle
		c.RecycleJitter = recycle / 10 // the default's 10%, scaled
	}
	if s, ok := v[keyLifetimeJitter]; ok {
		if c.RecycleJitter, err = parseDuration(keyLifetimeJitter, s, true); err != nil {
			return err
		}
		if c.RecycleJitter > c.Recycle {
			return &Error{Field: keyLifetimeJitter, Value: s,
				Limit: fmt.Sprintf("<= the lifetime (%s)", c.Recycle)}
		}
	}
	return nil
}

// maxSeconds is the longest duration time.Duration holds, in seconds.
const maxSeconds = float64(math.MaxInt64 / int64(time.Second))

// parseSeconds reads a positive number of seconds (SQLAlchemy's pool_timeout, pool_recycle).
func parseSeconds(key, s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	d := time.Duration(f * float64(time.Second))
	if err != nil || math.IsNaN(f) || f > maxSeconds || d <= 0 {
		return 0, &Error{Field: key, Value: s, Limit: "a number of seconds > 0"}
	}
	return d, nil
}

// parseDuration reads a Go duration such as "30s" (pgx's pool_* keys), > 0, or >= 0 when
// zeroOK.
func parseDuration(key, s string, zeroOK bool) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d < 0 || (d == 0 && !zeroOK) {
		limit := "a duration > 0 such as 30s"
		if zeroOK {
			limit = "a duration >= 0 such as 30s"
		}
		return 0, &Error{Field: key, Value: s, Limit: limit}
	}
	return d, nil
}

// hostAttempt is one connection attempt pgx would make: a host and whether it uses TLS.
type hostAttempt struct {
	host  string
	port  uint16
	tls   bool
	local bool // Unix socket or loopback address
}

// hostsOf lists the attempts of a parsed pgconn config, in pgx's order.
func hostsOf(cfg *pgconn.Config) []hostAttempt {
	all := make([]hostAttempt, 0, 1+len(cfg.Fallbacks))
	add := func(host string, port uint16, tls bool) {
		all = append(all, hostAttempt{host: host, port: port, tls: tls, local: isLocal(host, port)})
	}
	add(cfg.Host, cfg.Port, cfg.TLSConfig != nil)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.Port, f.TLSConfig != nil)
	}
	return all
}

// isLocal reports whether host is a Unix socket directory or a loopback address.
func isLocal(host string, port uint16) bool {
	if network, _ := pgconn.NetworkAddress(host, port); network == "unix" {
		return true
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	h, _, _ := strings.Cut(host, "%") // IPv6 zone
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// insecure returns the non-local hosts that pgx could reach without TLS, with the sslmode
// that does so (read from the attempts, so that it holds wherever the sslmode came from:
// connection string, PGSSLMODE or service file).
func insecure(attempts []hostAttempt) []insecureHost {
	var out []insecureHost
	for i := 0; i < len(attempts); {
		j := i + 1
		for j < len(attempts) && attempts[j].host == attempts[i].host && attempts[j].port == attempts[i].port {
			j++
		}
		run := attempts[i:j]
		i = j
		if run[0].local {
			continue
		}
		plain, tls := 0, 0
		for _, a := range run {
			if a.tls {
				tls++
			} else {
				plain++
			}
		}
		if plain == 0 {
			continue
		}
		mode := "prefer"
		switch {
		case tls == 0:
			mode = "disable"
		case !run[0].tls:
			mode = "allow"
		}
		out = append(out, insecureHost{host: run[0].host, mode: mode})
	}
	return out
}
