//go:build !linux

package pool

import (
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// withUserTimeout returns dial unchanged: TCP_USER_TIMEOUT is Linux's. Elsewhere only TCP
// keepalive bounds a dead flow, and only while nothing is unacknowledged.
func withUserTimeout(dial pgconn.DialFunc, _ time.Duration) pgconn.DialFunc { return dial }

// setKeepAliveIdle does nothing: the keepalive timing of an open socket is set on Linux only;
// elsewhere the dialer's (the config's KeepAlive) stays.
func setKeepAliveIdle(uintptr, time.Duration) {}
