package pool

import (
	"database/sql"

	"github.com/jackc/pgx/v5/stdlib"
)

// StdDB returns a *sql.DB on the pool's connections, for database/sql users (GORM, sqlx, bun).
// database/sql keeps its own idle connections, and each is checked out of the pool while it
// holds it: bound them with SetMaxIdleConns. Close the *sql.DB when done with it; [Pool.Close]
// closes every one still open.
//
// What applies there: pre-ping (with PingTimeout), the peek at idle connections, recycling,
// the overflow limit, and database/sql's own retry of errors that prove nothing reached the
// server (driver.ErrBadConn, at most 3 attempts). What does not: the retry policy, retries
// after a lost connection, the acquire timeout (bound the ctx instead), [Pool.Tx] and the
// pool's statistics of acquires.
func (p *Pool) StdDB() *sql.DB {
	db := stdlib.OpenDBFromPool(p.pgx)
	p.stdMu.Lock()
	p.std = append(p.std, db)
	p.stdMu.Unlock()
	return db
}
