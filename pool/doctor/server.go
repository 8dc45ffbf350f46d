package doctor

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// serverQuery asks the server about itself in one round trip; it reads settings and views only.
const serverQuery = `SELECT 'PostgreSQL ' || current_setting('server_version'), current_setting('server_version_num')::int, pg_is_in_recovery(),
	current_setting('default_transaction_read_only') = 'on',
	(SELECT source FROM pg_settings WHERE name = 'default_transaction_read_only'),
	current_setting('max_connections')::int,
	current_setting('superuser_reserved_connections')::int + coalesce(current_setting('reserved_connections', true)::int, 0),
	(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int`

// settingsQuery reads the settings that end sessions or probe flows, with their units and
// where each value came from.
const settingsQuery = `SELECT name, setting, coalesce(unit, ''), source FROM pg_settings
	WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout', 'statement_timeout',
		'tcp_keepalives_idle', 'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout')
	ORDER BY name`

// serverFacts are the values the judgements need, kept beside the exported Server.
type serverFacts struct {
	*Server
	durs map[string]time.Duration // the settings of settingsQuery that are durations
}

// readServer runs serverQuery and settingsQuery on conn.
func readServer(ctx context.Context, conn *pgx.Conn) (*serverFacts, error) {
	s := &Server{}
	var source *string
	err := conn.QueryRow(ctx, serverQuery).Scan(&s.Version, &s.VersionNum, &s.InRecovery, &s.ReadOnly,
		&source, &s.MaxConnections, &s.Reserved, &s.InUse)
	if err != nil {
		return nil, err
	}
	if source != nil && s.ReadOnly {
		s.ReadOnlySource = *source
	}
	f := &serverFacts{Server: s, durs: map[string]time.Duration{}}
	rows, err := conn.Query(ctx, settingsQuery)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var name, setting, unit, src string
		if err := rows.Scan(&name, &setting, &unit, &src); err != nil {
			return nil, err
		}
		value := setting
		if d, ok := asDuration(setting, unit); ok {
			f.durs[name] = d
			value = d.String()
			if d == 0 {
				value = "0 (off)"
			}
		}
		s.Settings = append(s.Settings, Setting{Name: name, Value: value, Note: src})
	}
	return f, rows.Err()
}

// asDuration reads a pg_settings value with its unit ("ms", "s", "min").
func asDuration(setting, unit string) (time.Duration, bool) {
	n, err := strconv.ParseInt(setting, 10, 64)
	if err != nil {
		return 0, false
	}
	switch unit {
	case "ms":
		return time.Duration(n) * time.Millisecond, true
	case "s":
		return time.Duration(n) * time.Second, true
	case "min":
		return time.Duration(n) * time.Minute, true
	}
	return 0, false
}

// seePooler finds a transaction pooler by its behaviour: a session's server process should
// stay the same between its transactions. While a second client holds a transaction open, the
// first runs another one; through a transaction pooler the first client's server process was
// free between its transactions, so the second client may be handed it, and the first then
// gets another. Only pg_backend_pid() is read: no session state is set that a pooler could
// pass on to other clients.
func seePooler(ctx context.Context, a *pgx.Conn, cc *pgx.ConnConfig, s *serverFacts) {
	pid := func(q interface {
		QueryRow(context.Context, string, ...any) pgx.Row
	}) (int, error) {
		var n int
		err := q.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&n)
		return n, err
	}
	a1, err := pid(a)
	if err != nil {
		s.PoolerEvidence = "not checked: " + err.Error()
		return
	}
	b, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		s.PoolerEvidence = "not checked: a second session did not open: " + err.Error()
		return
	}
	defer b.Close(context.Background())
	tx, err := b.Begin(ctx)
	if err != nil {
		s.PoolerEvidence = "not checked: " + err.Error()
		return
	}
	defer tx.Rollback(context.Background())
	bp, err := pid(tx)
	if err != nil {
		s.PoolerEvidence = "not checked: " + err.Error()
		return
	}
	a2, err := pid(a)
	if err != nil {
		s.PoolerEvidence = "not checked: " + err.Error()
		return
	}
	switch {
	case bp == a1:
		s.Pooler = "transaction"
		s.PoolerEvidence = fmt.Sprintf("another client was handed this session's server process (pid %d) between its transactions", a1)
	case a2 != a1:
		s.Pooler = "transaction"
		s.PoolerEvidence = fmt.Sprintf("this session's server process changed between transactions (pid %d, then %d)", a1, a2)
	default:
		s.Pooler = "none seen"
		s.PoolerEvidence = fmt.Sprintf("session kept its server process (pid %d) across transactions", a1)
	}
}
