package doctor

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Level is a finding's verdict.
type Level string

const (
	// OK: nothing to do.
	OK Level = "ok"
	// Warn: works, but costs errors, latency or safety under some condition the finding names.
	Warn Level = "warn"
	// Fail: does not work, or will fail as soon as the condition the finding names occurs.
	Fail Level = "fail"
)

// The stable identifiers of findings ([Finding.ID]). The wording of a finding may change; its
// ID does not. A check that could not run (the server was not reached) produces no finding.
const (
	IDConnWarning      = "conn.warning"     // a warning of config.Parse or config.FromEnv (one finding each)
	IDConnSSLMode      = "conn.sslmode"     // what the sslmode protects against
	IDConnPooler       = "conn.pooler"      // the host name names a known transaction pooler
	IDProvider         = "path.provider"    // the provider and kind of endpoint, from the host name
	IDDNS              = "path.dns"         // the host name resolves
	IDTCP              = "path.tcp"         // a TCP connection opens
	IDTLS              = "path.tls"         // the TLS handshake and its version
	IDVerifyFull       = "path.verify-full" // whether sslmode=verify-full would accept the certificate
	IDAuth             = "path.auth"        // the authentication methods the server offers (SCRAM, SCRAM-PLUS)
	IDSession          = "path.session"     // a session opens with the configuration (login included)
	IDRTT              = "path.rtt"         // round-trip time, median of a few pings
	IDServerVersion    = "server.version"   // the server's version
	IDStandby          = "server.standby"   // the server is a hot standby (in recovery)
	IDReadOnly         = "server.read-only" // transactions are read-only by default, and at which level
	IDPoolerBehaviour  = "server.pooler"    // a transaction pooler, seen by its behaviour, against Config.Pooler
	IDMaxConnections   = "server.max-connections"
	IDIdleSession      = "timeout.idle-session"        // idle_session_timeout against the pool's idle and recycle times
	IDIdleInTx         = "timeout.idle-in-transaction" // idle_in_transaction_session_timeout
	IDStatementTimeout = "timeout.statement"           // statement_timeout
	IDKeepAlive        = "timeout.keepalive"           // the pool's TCP keepalive against idle-flow limits
)

// Finding is one verdict of [Diagnose].
type Finding struct {
	// ID is one of the ID constants: stable, for programs and tests.
	ID string `json:"id"`
	// Level is ok, warn or fail.
	Level Level `json:"level"`
	// Text says what was found, in plain words.
	Text string `json:"text"`
}

// Advice is one change worth making: which setting, to what, and why.
type Advice struct {
	// ID is the ID of the finding it answers.
	ID string `json:"id"`
	// Setting names what to change: a connection string key (pool_recycle), a config field, or
	// a server setting.
	Setting string `json:"setting"`
	// Change says what to set it to.
	Change string `json:"change"`
	// Why says what goes wrong otherwise.
	Why string `json:"why"`
}

// Report is what [Diagnose] found. Durations are in nanoseconds in JSON. A Report never holds
// the password.
type Report struct {
	ConnString ConnString `json:"conn_string"`
	Path       Path       `json:"path"`
	// Server is nil when no session could be opened.
	Server   *Server   `json:"server,omitempty"`
	Findings []Finding `json:"findings"`
	Advice   []Advice  `json:"advice,omitempty"`
	// Took is how long the diagnosis ran.
	Took time.Duration `json:"took"`
}

// ConnString is what the connection string (or environment) said, as package config read it.
type ConnString struct {
	// Masked is the connection string as pgx gets it, password masked.
	Masked string `json:"masked"`
	// Hosts lists host:port in the order pgx tries them.
	Hosts    []string `json:"hosts"`
	User     string   `json:"user"`
	Database string   `json:"database"`
	// SSLMode is the sslmode pgx applies to the first host, as read from its TLS settings.
	SSLMode string `json:"sslmode"`
	// Pooler is Config.Pooler: "transaction" or "none".
	Pooler string `json:"pooler"`
	// Warnings are config's warnings: what was converted or removed.
	Warnings []string `json:"warnings,omitempty"`
	// Settings are the pool options in effect.
	Settings []Setting `json:"settings"`
}

// Setting is one named value.
type Setting struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	// Note says where it came from: "default", a pg_settings source, or "" when unknown.
	Note string `json:"note,omitempty"`
}

// Path is what lies between the service and the server, for the first host.
type Path struct {
	Host string `json:"host"`
	Port uint16 `json:"port"`
	// Provider names the provider and endpoint kind recognised from the host name, or "".
	Provider string `json:"provider,omitempty"`
	// Addrs are the DNS answers.
	Addrs   []string      `json:"addrs,omitempty"`
	DNSTime time.Duration `json:"dns_time,omitempty"`
	// Addr is the address the probe connected to.
	Addr        string        `json:"addr,omitempty"`
	ConnectTime time.Duration `json:"connect_time,omitempty"`
	TLS         *TLSInfo      `json:"tls,omitempty"`
	// Auth lists the authentication methods the server offered the configured user:
	// SASL mechanisms (SCRAM-SHA-256, SCRAM-SHA-256-PLUS), "md5", "password" or "trust".
	Auth []string `json:"auth,omitempty"`
	// SessionTime is how long opening a session took (TCP, TLS, login, startup).
	SessionTime time.Duration `json:"session_time,omitempty"`
	// RTT is the median of RTTs, the round-trip times of empty queries on an open session.
	RTT  time.Duration   `json:"rtt,omitempty"`
	RTTs []time.Duration `json:"rtts,omitempty"`
}

// TLSInfo describes the TLS session the probe opened and what certificate verification says.
type TLSInfo struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	// Subject and Issuer are the server certificate's; NotAfter its expiry.
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	// VerifyFull is "" when sslmode=verify-full would accept the certificate (against
	// sslrootcert, or the system's roots without one), else why it would not.
	VerifyFull string `json:"verify_full"`
	// VerifyCA is the same for verify-ca (the chain alone, without the host name).
	VerifyCA string `json:"verify_ca"`
}

// Server is what the server said about itself.
type Server struct {
	Version    string `json:"version"`
	VersionNum int    `json:"version_num"`
	InRecovery bool   `json:"in_recovery"`
	// ReadOnly is default_transaction_read_only; ReadOnlySource its pg_settings source
	// ("configuration file", "user", "database", ...).
	ReadOnly       bool   `json:"read_only"`
	ReadOnlySource string `json:"read_only_source,omitempty"`
	// Pooler is "transaction" when session state was lost between transactions, "none seen"
	// when it was kept, or "" when the check could not run.
	Pooler string `json:"pooler"`
	// PoolerEvidence says what was seen.
	PoolerEvidence string `json:"pooler_evidence,omitempty"`
	MaxConnections int    `json:"max_connections"`
	// Reserved counts the connections kept for superusers and reserved roles.
	Reserved int `json:"reserved"`
	// InUse is the number of sessions pg_stat_activity shows.
	InUse int `json:"in_use"`
	// Settings are the timeouts and keepalive settings, as pg_settings shows them.
	Settings []Setting `json:"settings"`
}

// WriteText writes r for people: aligned sections, then a line per finding (ok, warn, fail),
// then the advice.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "  %s\t%s\n", k, v)
		}
	}
	cs := r.ConnString
	fmt.Fprintln(tw, "connection string")
	line("read", cs.Masked)
	line("hosts", strings.Join(cs.Hosts, ", "))
	line("user / database", cs.User+" / "+cs.Database)
	line("sslmode", cs.SSLMode)
	line("pooler", cs.Pooler)
	for _, s := range cs.Settings {
		line(s.Name, s.Value+note(s.Note))
	}
	p := r.Path
	fmt.Fprintln(tw, "path")
	line("host", fmt.Sprintf("%s port %d", p.Host, p.Port))
	line("provider", p.Provider)
	if p.DNSTime > 0 {
		line("dns", strings.Join(p.Addrs, ", ")+" in "+ms(p.DNSTime))
	}
	if p.Addr != "" {
		line("tcp", p.Addr+" in "+ms(p.ConnectTime))
	}
	if t := p.TLS; t != nil {
		line("tls", t.Version+", "+t.Cipher)
		line("certificate", t.Subject+", issued by "+t.Issuer+", expires "+t.NotAfter.Format("2006-01-02"))
		line("verify-full", verdict(t.VerifyFull))
		line("verify-ca", verdict(t.VerifyCA))
	}
	line("auth", strings.Join(p.Auth, ", "))
	if p.SessionTime > 0 {
		line("session", "opened in "+ms(p.SessionTime))
	}
	if p.RTT > 0 {
		line("rtt", "median "+ms(p.RTT)+fmt.Sprintf(" of %d pings", len(p.RTTs)))
	}
	if s := r.Server; s != nil {
		fmt.Fprintln(tw, "server")
		line("version", s.Version)
		line("in recovery", fmt.Sprint(s.InRecovery))
		line("read only", fmt.Sprint(s.ReadOnly)+note(s.ReadOnlySource))
		line("pooler", s.Pooler+note(s.PoolerEvidence))
		line("connections", fmt.Sprintf("max_connections %d, %d reserved, %d in use", s.MaxConnections, s.Reserved, s.InUse))
		for _, st := range s.Settings {
			line(st.Name, st.Value+note(st.Note))
		}
	}
	fmt.Fprintln(tw, "findings")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Level, f.ID, f.Text)
	}
	if len(r.Advice) > 0 {
		fmt.Fprintln(tw, "advice")
		for _, a := range r.Advice {
			fmt.Fprintf(tw, "  %s\t%s\n", a.Setting, a.Change)
			fmt.Fprintf(tw, "  \t  why: %s\n", a.Why)
		}
	}
	return tw.Flush()
}

// Worst returns the most severe level among the findings (OK when there are none).
func (r *Report) Worst() Level {
	worst := OK
	for _, f := range r.Findings {
		switch {
		case f.Level == Fail:
			return Fail
		case f.Level == Warn:
			worst = Warn
		}
	}
	return worst
}

// Find returns the findings with the given ID.
func (r *Report) Find(id string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}

func note(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func verdict(why string) string {
	if why == "" {
		return "would pass"
	}
	return "would fail: " + why
}

// ms formats d for people: milliseconds with one decimal below 10 ms.
func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}
