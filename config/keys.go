package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Connection string keys that take part in rules between keys.
const (
	keyPoolSize        = "pool_size"
	keyMaxOverflow     = "max_overflow"
	keyPoolRecycle     = "pool_recycle"
	keyMaxConns        = "pool_max_conns"
	keyMinConns        = "pool_min_conns"
	keyMaxConnLifetime = "pool_max_conn_lifetime"
	keyLifetimeJitter  = "pool_max_conn_lifetime_jitter"
	keyPooler          = "pooler"
	keyKeepChannelBind = "pgsteady_keep_channel_binding"
	keyAllowInsecure   = "pgsteady_allow_insecure"
	keyChannelBinding  = "channel_binding"
)

// keyRule is one connection string key that Parse reads and removes.
type keyRule struct {
	key    string // as written in the connection string
	field  string // the Config field it sets, for the package documentation
	limit  string // the values accepted, for errors and the package documentation
	origin string // where the key comes from: "SQLAlchemy", "pgx", "libpq", or "" for pgsteady
	// read parses a value and stores it in r; false when the value is not accepted.
	read func(r *reading, s string) bool
}

// keyRules is the one list of the keys Parse reads: each value is read and checked against
// its own limit in this order, then the rules between keys run (see [Config.applyKeys]). The
// package documentation's table is checked against it by a test.
var keyRules = []keyRule{
	{keyPoolSize, "Size", "an integer >= 1", "SQLAlchemy", into(integer(1), func(r *reading) *int { return &r.c.Size })},
	{keyMaxOverflow, "Overflow", "an integer >= 0", "SQLAlchemy", into(integer(0), func(r *reading) *int { return &r.c.Overflow })},
	{"pool_timeout", "AcquireTimeout", "a number of seconds > 0", "SQLAlchemy", into(seconds, func(r *reading) *time.Duration { return &r.c.AcquireTimeout })},
	{keyPoolRecycle, "Recycle", "a number of seconds > 0", "SQLAlchemy", into(seconds, func(r *reading) *time.Duration { return &r.recycle })},
	{"pool_pre_ping", "PrePing", "true, false, idle, always or never", "SQLAlchemy", into(prePing, func(r *reading) *PrePingMode { return &r.c.PrePing })},
	{keyMaxConns, "Size + Overflow", "an integer >= 1", "pgx", into(integer(1), func(r *reading) *int { return &r.maxConns })},
	{keyMinConns, "WarmUp", "0 or the pool size", "pgx", into(integer(0), func(r *reading) *int { return &r.minConns })},
	{"pool_min_idle_conns", "-", "0 (WarmUp keeps connections)", "pgx", into(zero, func(r *reading) *int { return &r.minIdleConns })},
	{keyMaxConnLifetime, "Recycle", "a duration > 0 such as 30s", "pgx", into(duration(false), func(r *reading) *time.Duration { return &r.lifetime })},
	{keyLifetimeJitter, "RecycleJitter", "a duration >= 0 such as 30s", "pgx", into(duration(true), func(r *reading) *time.Duration { return &r.c.RecycleJitter })},
	{"pool_max_conn_idle_time", "IdleTimeout", "a duration > 0 such as 30s", "pgx", into(duration(false), func(r *reading) *time.Duration { return &r.c.IdleTimeout })},
	{"pool_overflow_idle_time", "OverflowIdleTimeout", "a duration >= 0 such as 30s", "", into(duration(true), func(r *reading) *time.Duration { return &r.c.OverflowIdleTimeout })},
	{"pool_health_check_period", "HealthCheckPeriod", "a duration > 0 such as 30s", "pgx", into(duration(false), func(r *reading) *time.Duration { return &r.c.HealthCheckPeriod })},
	{"pool_ping_timeout", "PingTimeout", "a duration > 0 such as 30s", "pgx", into(duration(false), func(r *reading) *time.Duration { return &r.c.PingTimeout })},
	{keyPooler, "Pooler", "transaction, session or none", "", into(pooler, func(r *reading) *PoolerMode { return &r.c.Pooler })},
	{keyKeepChannelBind, "KeepChannelBinding", "true or false", "", into(strconv.ParseBool, func(r *reading) *bool { return &r.c.KeepChannelBinding })},
	{keyAllowInsecure, "AllowInsecure", "true or false", "", into(strconv.ParseBool, func(r *reading) *bool { return &r.c.AllowInsecure })},
	{keyChannelBinding, "(removed unless kept)", "disable, prefer or require", "libpq", into(channelBinding, func(r *reading) *string { return &r.st.channelBinding })},
}

// reading is what applyKeys has read so far: the values of the keys found, in the Config
// where a key alone decides a field, and here where rules between keys decide.
type reading struct {
	c                 *Config
	st                *state
	raw               map[string]string // the keys found, with their values as written
	maxConns          int
	minConns          int
	minIdleConns      int // accepted only as 0: pgsteady keeps connections with WarmUp
	recycle, lifetime time.Duration
}

func (r *reading) given(key string) bool {
	_, ok := r.raw[key]
	return ok
}

// into makes a keyRule's read from a parser and the place the value goes.
func into[T any](parse func(string) (T, error), dst func(*reading) *T) func(*reading, string) bool {
	return func(r *reading, s string) bool {
		v, err := parse(s)
		if err != nil {
			return false
		}
		*dst(r) = v
		return true
	}
}

// applyKeys reads and removes pgsteady's keys from d: first every key of [keyRules] (a
// percent-encoding error first), then any other pool_ or pgsteady_ key is refused, then each
// value is read against its own limit, and last the rules between keys run.
func (c *Config) applyKeys(d *dsn, st *state) error {
	r := &reading{c: c, st: st, raw: make(map[string]string)}
	for _, k := range keyRules {
		val, ok, bad := d.take(k.key)
		if bad {
			return &Error{Field: k.key, Limit: "valid percent-encoding"}
		}
		if ok {
			r.raw[k.key] = val
		}
	}
	for _, p := range d.params {
		if strings.HasPrefix(p.key, "pool_") || strings.HasPrefix(p.key, "pgsteady_") {
			return unknownKeyError(p)
		}
	}
	for _, k := range keyRules {
		if s, ok := r.raw[k.key]; ok && !k.read(r, s) {
			return &Error{Field: k.key, Value: s, Limit: k.limit}
		}
	}
	for _, rule := range []func(*reading) error{sizeRule, warmUpRule, recycleRule, overflowIdleRule, channelBindingRule} {
		if err := rule(r); err != nil {
			return err
		}
	}
	st.poolerGiven = r.given(keyPooler)
	return nil
}

// overflowIdleRule keeps the default OverflowIdleTimeout within a shorter IdleTimeout: an
// overflow connection is never kept longer than any idle connection. Given explicitly, the
// two are checked against each other by validate.
func overflowIdleRule(r *reading) error {
	if !r.given("pool_overflow_idle_time") && r.c.OverflowIdleTimeout > r.c.IdleTimeout {
		r.c.OverflowIdleTimeout = r.c.IdleTimeout
	}
	return nil
}

// sizeRule makes pool_max_conns agree with pool_size and max_overflow: given one of those, it
// sets the other; given neither, Size is min(DefaultSize, pool_max_conns) and Overflow the rest.
func sizeRule(r *reading) error {
	if !r.given(keyMaxConns) {
		return nil
	}
	c, maxc := r.c, r.maxConns
	bad := func(format string, n int) error {
		return &Error{Field: keyMaxConns, Value: strconv.Itoa(maxc), Limit: fmt.Sprintf(format, n)}
	}
	switch hasSize, hasOver := r.given(keyPoolSize), r.given(keyMaxOverflow); {
	case hasSize && hasOver:
		if c.Size+c.Overflow != maxc {
			return bad("pool_size + max_overflow (%d)", c.Size+c.Overflow)
		}
	case hasSize:
		if maxc < c.Size {
			return bad(">= pool_size (%d)", c.Size)
		}
		c.Overflow = maxc - c.Size
	case hasOver:
		if maxc <= c.Overflow {
			return bad("> max_overflow (%d)", c.Overflow)
		}
		c.Size = maxc - c.Overflow
	default:
		c.Size = min(DefaultSize, maxc)
		c.Overflow = maxc - c.Size
	}
	return nil
}

// warmUpRule accepts pool_min_conns of 0 or the pool size, which sets WarmUp.
func warmUpRule(r *reading) error {
	if !r.given(keyMinConns) {
		return nil
	}
	switch r.minConns {
	case 0:
		r.c.WarmUp = false
	case r.c.Size:
		r.c.WarmUp = true
	default:
		return &Error{Field: keyMinConns, Value: r.raw[keyMinConns],
			Limit: fmt.Sprintf("0 or the pool size (%d)", r.c.Size)}
	}
	return nil
}

// recycleRule makes pool_recycle and pool_max_conn_lifetime agree, sets RecycleJitter to 10%
// of the lifetime when it is not given, and keeps the jitter within the lifetime.
func recycleRule(r *reading) error {
	hasRecycle, hasLifetime := r.given(keyPoolRecycle), r.given(keyMaxConnLifetime)
	if hasRecycle && hasLifetime && r.recycle != r.lifetime {
		return &Error{Field: keyMaxConnLifetime, Value: r.raw[keyMaxConnLifetime],
			Limit: fmt.Sprintf("equal to pool_recycle (%s)", r.recycle)}
	}
	if hasRecycle || hasLifetime {
		r.c.Recycle = max(r.recycle, r.lifetime) // equal when both are given
		if !r.given(keyLifetimeJitter) {
			r.c.RecycleJitter = r.c.Recycle / 10 // the default's 10%, scaled
		}
	}
	if r.given(keyLifetimeJitter) && r.c.RecycleJitter > r.c.Recycle {
		return &Error{Field: keyLifetimeJitter, Value: r.raw[keyLifetimeJitter],
			Limit: fmt.Sprintf("<= the lifetime (%s)", r.c.Recycle)}
	}
	return nil
}

// channelBindingRule adds a warning when channel_binding is removed and not kept.
func channelBindingRule(r *reading) error {
	if !r.given(keyChannelBinding) || r.c.KeepChannelBinding {
		return nil
	}
	r.c.Warnings = append(r.c.Warnings, fmt.Sprintf(
		"channel_binding=%s removed from the connection string (pgx then uses PGCHANNELBINDING or \"prefer\"); "+
			"set %s=true or Config.KeepChannelBinding to keep it", r.st.channelBinding, keyKeepChannelBind))
	return nil
}

// errValue is what the parsers below return for a value they refuse; applyKeys turns it into
// an *Error naming the key, the value and the key's limit.
var errValue = errors.New("value not accepted")

// integer reads a 32-bit integer >= least.
func integer(least int) func(string) (int, error) {
	return func(s string) (int, error) {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil || int(n) < least {
			return 0, errValue
		}
		return int(n), nil
	}
}

// zero reads the integer 0 and nothing else.
func zero(s string) (int, error) {
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32); err != nil || n != 0 {
		return 0, errValue
	}
	return 0, nil
}

// maxSeconds is the longest duration time.Duration holds, in seconds.
const maxSeconds = float64(math.MaxInt64 / int64(time.Second))

// seconds reads a positive number of seconds, as SQLAlchemy's pool_timeout and pool_recycle
// take them ("2.5" is 2.5 s).
func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	d := time.Duration(f * float64(time.Second))
	if err != nil || math.IsNaN(f) || f > maxSeconds || d <= 0 {
		return 0, errValue
	}
	return d, nil
}

// duration reads a Go duration such as "30s" (pgx's pool_* keys), > 0, or >= 0 when zeroOK.
func duration(zeroOK bool) func(string) (time.Duration, error) {
	return func(s string) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil || d < 0 || (d == 0 && !zeroOK) {
			return 0, errValue
		}
		return d, nil
	}
}

// prePing reads idle, always or never, or a boolean as SQLAlchemy's pool_pre_ping takes it:
// true pings always, false never.
func prePing(s string) (PrePingMode, error) {
	switch strings.ToLower(s) {
	case "idle":
		return PrePingIdle, nil
	case "always":
		return PrePingAlways, nil
	case "never":
		return PrePingNever, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return 0, errValue
	}
	if b {
		return PrePingAlways, nil
	}
	return PrePingNever, nil
}

// pooler reads transaction, session or none, in any case.
func pooler(s string) (PoolerMode, error) {
	switch strings.ToLower(s) {
	case "transaction":
		return PoolerTransaction, nil
	case "none", "session":
		return PoolerNone, nil
	}
	return 0, errValue
}

// channelBinding reads libpq's channel_binding values, which are case-sensitive.
func channelBinding(s string) (string, error) {
	switch s {
	case "disable", "prefer", "require":
		return s, nil
	}
	return "", errValue
}
