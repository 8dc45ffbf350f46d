package doctor

import (
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/config"
)

// readConnString describes what cfg says, with pc the pgx configuration built from it, and
// judges the connection string.
func readConnString(cfg *config.Config, pc *pgconn.Config, d *diagnosis) {
	cs := &d.r.ConnString
	cs.Masked = maskedConnString(cfg)
	cs.Hosts = append(cs.Hosts, hostPort(pc.Host, pc.Port))
	for _, f := range pc.Fallbacks {
		if hp := hostPort(f.Host, f.Port); hp != cs.Hosts[len(cs.Hosts)-1] {
			cs.Hosts = append(cs.Hosts, hp)
		}
	}
	cs.User, cs.Database = pc.User, pc.Database
	cs.SSLMode = sslModeOf(pc)
	cs.Pooler = cfg.Pooler.String()
	cs.Warnings = cfg.Warnings
	cs.Settings = poolSettings(cfg)

	for _, w := range cfg.Warnings {
		d.add(IDConnWarning, Warn, w)
	}
	local := isLocal(pc.Host)
	switch cs.SSLMode {
	case "verify-full":
		d.add(IDConnSSLMode, OK, "sslmode=verify-full: the server's certificate and name are checked")
	case "verify-ca":
		d.add(IDConnSSLMode, Warn, "sslmode=verify-ca checks the certificate's issuer but not the host name")
		d.advise(IDConnSSLMode, "sslmode", "verify-full, with sslrootcert set to the provider's CA",
			"verify-ca accepts any certificate of the same CA, also one issued for another host")
	case "require", "prefer", "allow":
		if local {
			d.add(IDConnSSLMode, OK, "sslmode="+cs.SSLMode+" to a local server")
			break
		}
		d.add(IDConnSSLMode, Warn, "sslmode="+cs.SSLMode+" encrypts but does not verify the server: anyone on the path can pose as it")
		d.advise(IDConnSSLMode, "sslmode", "verify-full, with sslrootcert set to the provider's CA (or sslrootcert=system for a public CA)",
			"sslmode="+cs.SSLMode+" does not verify the server")
	case "disable":
		if local {
			d.add(IDConnSSLMode, OK, "sslmode=disable to a local server")
			break
		}
		d.add(IDConnSSLMode, Fail, "sslmode=disable: the password and data cross the network in clear")
		d.advise(IDConnSSLMode, "sslmode", "verify-full", "without TLS the password and data can be read on the way")
	}
	if cfg.Pooler == config.PoolerTransaction {
		d.add(IDConnPooler, OK, "Pooler=transaction: queries prepare nothing by name, as a transaction pooler needs")
	}
}

// maskedConnString returns the connection string with the password masked.
func maskedConnString(cfg *config.Config) string { return cfg.Masked() }

// sslModeOf reads the sslmode back from what pgconn.ParseConfig made of it (see pgconn's
// configTLS): TLS off first and on in a fallback is allow; on first and off in a fallback to
// the same host is prefer; unverified is require; a chain check alone is verify-ca (or require
// with sslrootcert, which libpq treats as verify-ca); a full check is verify-full.
func sslModeOf(pc *pgconn.Config) string {
	var next *pgconn.FallbackConfig
	for _, f := range pc.Fallbacks {
		if f.Host == pc.Host && f.Port == pc.Port {
			next = f
			break
		}
	}
	t := pc.TLSConfig
	switch {
	case t == nil && next != nil && next.TLSConfig != nil:
		return "allow"
	case t == nil:
		return "disable"
	case next != nil && next.TLSConfig == nil:
		return "prefer"
	case !t.InsecureSkipVerify:
		return "verify-full"
	case t.VerifyPeerCertificate != nil:
		return "verify-ca"
	}
	return "require"
}

// poolSettings lists the pool options in effect, noting those left at their default.
func poolSettings(cfg *config.Config) []Setting {
	def := func(b bool) string {
		if b {
			return "default"
		}
		return ""
	}
	return []Setting{
		{"pool size", strconv.Itoa(cfg.Size) + " + " + strconv.Itoa(cfg.Overflow) + " overflow",
			def(cfg.Size == config.DefaultSize && cfg.Overflow == config.DefaultOverflow)},
		{"pre-ping", prePingText(cfg),
			def(cfg.PrePing == config.DefaultPrePing && cfg.PrePingAfter == config.DefaultPrePingAfter && cfg.PingTimeout == config.DefaultPingTimeout)},
		{"recycle", cfg.Recycle.String() + " + up to " + cfg.RecycleJitter.String(),
			def(cfg.Recycle == config.DefaultRecycle && cfg.RecycleJitter == config.DefaultRecycleJitter)},
		{"idle timeout", cfg.IdleTimeout.String() + ", checked every " + cfg.HealthCheckPeriod.String(),
			def(cfg.IdleTimeout == config.DefaultIdleTimeout && cfg.HealthCheckPeriod == config.DefaultHealthCheckPeriod)},
		{"keepalive", keepAliveText(cfg), def(cfg.KeepAlive == config.DefaultKeepAlive)},
		{"timeouts", "acquire " + cfg.AcquireTimeout.String() + ", connect " + cfg.ConnectTimeout.String(),
			def(cfg.AcquireTimeout == config.DefaultAcquireTimeout && cfg.ConnectTimeout == config.DefaultConnectTimeout)},
	}
}

func keepAliveText(cfg *config.Config) string {
	if cfg.KeepAlive < 0 {
		return "off"
	}
	return "after " + cfg.KeepAlive.String() + " idle; a dead flow is found within " + cfg.DeadFlowAfter().String()
}

// isLocal reports whether host is a Unix socket directory, localhost or a loopback address.
func isLocal(host string) bool {
	if strings.HasPrefix(host, "/") || strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

func prePingText(cfg *config.Config) string {
	switch cfg.PrePing {
	case config.PrePingNever:
		return "never"
	case config.PrePingIdle:
		return "when idle over " + cfg.PrePingAfter.String() + ", timeout " + cfg.PingTimeout.String()
	}
	return cfg.PrePing.String() + ", timeout " + cfg.PingTimeout.String()
}
