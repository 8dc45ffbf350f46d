package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pgsteady/pgsteady/pool"
)

// migrationFiles holds the schema, one file per version: NNNN_name.sql.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one versioned SQL file.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the NNNN_name.sql files of dir in fsys, in version order.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		name := e.Name()
		prefix, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.sql with NNNN > 0", name)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s have the same version", ms[i-1].name, ms[i].name)
		}
	}
	return ms, nil
}

// migrate brings the schema up to date with the embedded migrations. It takes no advisory lock
// (session locks do not work behind a transaction pooler such as Neon's); instead each
// migration runs in one transaction that first inserts its version row with ON CONFLICT DO
// NOTHING. That row serializes concurrent starts: a second instance's insert waits for the
// first one's transaction, then inserts nothing, and the migration is skipped. Migration files
// are idempotent too (IF NOT EXISTS), so an ambiguous commit is settled by running again.
func migrate(ctx context.Context, p *pool.Pool, logger *slog.Logger) error {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`
	// Two instances creating the table at once can collide in the catalog (IF NOT EXISTS is
	// not atomic): the loser gets a unique violation and succeeds on the next try.
	for attempt := 1; ; attempt++ {
		_, err = p.Idempotent().Exec(ctx, createTable)
		if err == nil || attempt == 3 || !isDuplicateObject(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("migrate: schema_migrations: %w", err)
	}

	for _, m := range ms {
		var applied bool
		for attempt := 1; ; attempt++ {
			err = p.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
				applied = false
				tag, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)
					ON CONFLICT (version) DO NOTHING`, m.version, m.name)
				if err != nil || tag.RowsAffected() == 0 {
					return err
				}
				// No arguments: pgx sends it with the simple protocol, several statements at once.
				if _, err := tx.Exec(ctx, m.sql); err != nil {
					return err
				}
				applied = true
				return nil
			})
			var ambiguous *pool.AmbiguousCommitError
			if !errors.As(err, &ambiguous) || attempt == 3 {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", m.name, err)
		}
		if applied {
			logger.Info("docapi: migration applied", "migration", m.name)
		}
	}
	return nil
}

// isDuplicateObject reports a catalog collision between concurrent CREATE ... IF NOT EXISTS.
func isDuplicateObject(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "23505", "42P07", "42710": // unique_violation, duplicate_table, duplicate_object
		return true
	}
	return false
}
