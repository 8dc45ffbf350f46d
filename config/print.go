package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// This file is every way a Config shows itself: String, fmt's verbs, GoString, slog and
// JSON. Each one is built from the masked connection string and the options, and the
// passwords Parse found are masked again on top, so no path prints a password.

// String describes the Config: the connection string with its password masked, then every
// option. It never contains a password.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString(c.shown())
	fmt.Fprintf(&b, " Size=%d Overflow=%d AcquireTimeout=%s Recycle=%s RecycleJitter=%s",
		c.Size, c.Overflow, c.AcquireTimeout, c.Recycle, c.RecycleJitter)
	fmt.Fprintf(&b, " PrePing=%s PrePingAfter=%s PingTimeout=%s ConnectTimeout=%s KeepAlive=%s",
		c.PrePing, c.PrePingAfter, c.PingTimeout, c.ConnectTimeout, c.KeepAlive)
	fmt.Fprintf(&b, " HealthCheckPeriod=%s IdleTimeout=%s OverflowIdleTimeout=%s Pooler=%s",
		c.HealthCheckPeriod, c.IdleTimeout, c.OverflowIdleTimeout, c.Pooler)
	for _, f := range c.flags() {
		if f.on {
			b.WriteString(" " + f.name)
		}
	}
	return c.mask(b.String())
}

// shown is the connection string with its passwords masked.
// Masked returns the connection string as Parse read it (after the conversions its warnings
// name), with every password masked; "(no connection string)" for a Config not made by Parse.
func (c Config) Masked() string { return c.mask(c.shown()) }

func (c Config) shown() string {
	if c.st == nil {
		return "(no connection string)"
	}
	return c.st.shown
}

// mask masks every password Parse found in text.
func (c Config) mask(text string) string {
	if c.st == nil {
		return text
	}
	return c.st.secrets.redact(text)
}

type flag struct {
	name string
	on   bool
}

func (c Config) flags() []flag {
	return []flag{{"KeepChannelBinding", c.KeepChannelBinding}, {"AllowInsecure", c.AllowInsecure},
		{"LazyStart", c.LazyStart}, {"WarmUp", c.WarmUp}}
}

// GoString returns the Config as Go syntax for %#v, with the connection string masked (as
// the Conn field, which a Config does not have: it stands for what Parse read).
func (c Config) GoString() string {
	return c.mask(fmt.Sprintf("config.Config{Conn:%q, Size:%d, Overflow:%d, AcquireTimeout:%d, Recycle:%d, "+
		"RecycleJitter:%d, PrePing:%d, PrePingAfter:%d, PingTimeout:%d, ConnectTimeout:%d, KeepAlive:%d, "+
		"HealthCheckPeriod:%d, IdleTimeout:%d, OverflowIdleTimeout:%d, Pooler:%d, KeepChannelBinding:%t, AllowInsecure:%t, "+
		"LazyStart:%t, WarmUp:%t, Retry:%#v, Warnings:%#v}",
		c.shown(), c.Size, c.Overflow, c.AcquireTimeout, c.Recycle, c.RecycleJitter, c.PrePing,
		c.PrePingAfter, c.PingTimeout, c.ConnectTimeout, c.KeepAlive, c.HealthCheckPeriod, c.IdleTimeout,
		c.OverflowIdleTimeout, c.Pooler, c.KeepChannelBinding, c.AllowInsecure, c.LazyStart, c.WarmUp, c.Retry, c.Warnings))
}

// Format makes every fmt verb show the masked Config: %#v is [Config.GoString], %q the
// quoted [Config.String], every other verb (%v, %+v, %s, ...) [Config.String].
func (c Config) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		fmt.Fprint(f, c.GoString())
	case verb == 'q':
		fmt.Fprintf(f, "%q", c.String())
	default:
		fmt.Fprint(f, c.String())
	}
}

// LogValue makes [log/slog] log the Config as a group of its options, with the connection
// string masked.
func (c Config) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("conn", c.shown()),
		slog.Int("size", c.Size),
		slog.Int("overflow", c.Overflow),
		slog.Duration("acquire_timeout", c.AcquireTimeout),
		slog.Duration("recycle", c.Recycle),
		slog.Duration("recycle_jitter", c.RecycleJitter),
		slog.String("pre_ping", c.PrePing.String()),
		slog.Duration("pre_ping_after", c.PrePingAfter),
		slog.Duration("ping_timeout", c.PingTimeout),
		slog.Duration("connect_timeout", c.ConnectTimeout),
		slog.Duration("keepalive", c.KeepAlive),
		slog.Duration("health_check_period", c.HealthCheckPeriod),
		slog.Duration("idle_timeout", c.IdleTimeout),
		slog.Duration("overflow_idle_timeout", c.OverflowIdleTimeout),
		slog.String("pooler", c.Pooler.String()),
	}
	for _, f := range c.flags() {
		attrs = append(attrs, slog.Bool(f.name, f.on))
	}
	for i, a := range attrs {
		if a.Value.Kind() == slog.KindString {
			attrs[i].Value = slog.StringValue(c.mask(a.Value.String()))
		}
	}
	return slog.GroupValue(attrs...)
}

// jsonConfig is the JSON form of a Config: durations as Go duration strings, modes by name.
type jsonConfig struct {
	Conn                string
	Size                int
	Overflow            int
	AcquireTimeout      string
	Recycle             string
	RecycleJitter       string
	PrePing             string
	PrePingAfter        string
	PingTimeout         string
	ConnectTimeout      string
	KeepAlive           string
	HealthCheckPeriod   string
	IdleTimeout         string
	OverflowIdleTimeout string
	Pooler              string
	KeepChannelBinding  bool
	AllowInsecure       bool
	LazyStart           bool
	WarmUp              bool
	Warnings            []string
}

// MarshalJSON returns the Config as a JSON object with the connection string masked (as
// "Conn"), durations as Go duration strings ("30s") and modes by name. The retry policy is
// left out.
func (c Config) MarshalJSON() ([]byte, error) {
	d := func(x time.Duration) string { return x.String() }
	warnings := make([]string, len(c.Warnings))
	for i, w := range c.Warnings {
		warnings[i] = c.mask(w)
	}
	return json.Marshal(jsonConfig{
		Conn: c.shown(), Size: c.Size, Overflow: c.Overflow, AcquireTimeout: d(c.AcquireTimeout),
		Recycle: d(c.Recycle), RecycleJitter: d(c.RecycleJitter), PrePing: c.PrePing.String(),
		PrePingAfter: d(c.PrePingAfter), PingTimeout: d(c.PingTimeout), ConnectTimeout: d(c.ConnectTimeout),
		KeepAlive: d(c.KeepAlive), HealthCheckPeriod: d(c.HealthCheckPeriod), IdleTimeout: d(c.IdleTimeout),
		OverflowIdleTimeout: d(c.OverflowIdleTimeout), Pooler: c.Pooler.String(), KeepChannelBinding: c.KeepChannelBinding, AllowInsecure: c.AllowInsecure,
		LazyStart: c.LazyStart, WarmUp: c.WarmUp, Warnings: warnings,
	})
}
