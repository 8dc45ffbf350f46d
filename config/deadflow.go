package config

import "time"

// DeadFlowAfter is how long a connection's network flow may go unanswered before the
// connection is declared dead: KeepAlive of idleness plus the unanswered keepalive probes
// (1 minute with the defaults), or 0 when keepalives are disabled (KeepAlive < 0). Package pool
// applies the same bound to a statement in flight (TCP_USER_TIMEOUT on Linux), so a flow that a
// NAT or a failed host silently dropped ends in about this long, idle or busy.
func (c *Config) DeadFlowAfter() time.Duration {
	if c.KeepAlive < 0 {
		return 0
	}
	return c.KeepAlive + keepAliveCount*min(c.KeepAlive, keepAliveInterval)
}
