package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/pgsteady/pgsteady/pool"
)

// errNotFound is returned by the store when no row matches.
var errNotFound = errors.New("not found")

// errCommitUnknown is returned by store.create when the outcome of an upload could not be
// established: the client should retry with the same idempotency key.
var errCommitUnknown = errors.New("the upload's outcome is unknown, retry with the same Idempotency-Key")

// errKeyReused is returned by store.create when the user's idempotency key already stored an
// upload with other fields or another image.
var errQuota = errors.New("upload quota reached: the images you stored take all of it")

var errKeyReused = errors.New("this Idempotency-Key was already used for an upload with other fields or another image: use a new key for a new upload")

// store runs docapi's SQL, always parameterized, on a pgsteady cluster. Users and tokens are
// read and written on the primary through Idempotent(), so that a connection lost in the middle
// of a statement is retried; uploads run in c.Tx; documents are read through c.Replica() with
// read-your-writes (see docs).
type store struct {
	c       *pool.Cluster
	log     *slog.Logger
	sql     map[*kind]kindSQL
	quota   int64  // bytes of images a user may store; 0: no limit
	usedSQL string // the bytes of images a user ($1) has stored, all kinds together
}

// defaultUploadQuota is the bytes of images one user may store: 100 MiB, twenty images of the
// largest size (DOCAPI_USER_QUOTA_MB).
const defaultUploadQuota = 100 << 20

// kindSQL holds the statements of one kind, built once from its (constant) field list. The
// read statements come in two scopes: own (the caller's documents only, owner in the last
// parameter) and all (for an admin).
type kindSQL struct {
	list, get, image [2]string // [scopeOwn], [scopeAll]
	insert, byKey    string
	chunk            string // a part of a document's image, by id (after the image read's check)
}

// Read scopes: the index into kindSQL's read statements.
const (
	scopeOwn = 0
	scopeAll = 1
)

// viewer is who reads: a user sees their own documents, an admin everyone's.
type viewer struct {
	id    int64
	admin bool
}

// scope returns the statement scope for v and the arguments that follow the statement's own.
func (v viewer) scope() (int, []any) {
	if v.admin {
		return scopeAll, nil
	}
	return scopeOwn, []any{v.id}
}

func newStore(c *pool.Cluster, logger *slog.Logger) *store {
	s := &store{c: c, log: logger, sql: make(map[*kind]kindSQL, len(kinds)), quota: defaultUploadQuota}
	var used []string
	for _, k := range kinds {
		used = append(used, "SELECT image_size FROM "+pgx.Identifier{k.name}.Sanitize()+" WHERE user_id = $1")
	}
	s.usedSQL = "SELECT coalesce(sum(image_size), 0) FROM (" + strings.Join(used, " UNION ALL ") + ") stored"
	for _, k := range kinds {
		table := pgx.Identifier{k.name}.Sanitize()
		cols := make([]string, len(k.fields))
		params := make([]string, len(k.fields)+6)
		for i, f := range k.fields {
			cols[i] = pgx.Identifier{f.name}.Sanitize()
		}
		for i := range params {
			params[i] = "$" + strconv.Itoa(i+1)
		}
		fields := strings.Join(cols, ", ")
		selectList := "id, " + fields + ", image_type, image_size, created_at"
		s.sql[k] = kindSQL{
			list: [2]string{
				"SELECT " + selectList + " FROM " + table + " WHERE user_id = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
				"SELECT " + selectList + " FROM " + table + " WHERE id < $1 ORDER BY id DESC LIMIT $2",
			},
			get: [2]string{
				"SELECT " + selectList + " FROM " + table + " WHERE id = $1 AND user_id = $2",
				"SELECT " + selectList + " FROM " + table + " WHERE id = $1",
			},
			image: [2]string{
				"SELECT image_type, image_size FROM " + table + " WHERE id = $1 AND user_id = $2",
				"SELECT image_type, image_size FROM " + table + " WHERE id = $1",
			},
			chunk: "SELECT substring(image FROM $2 FOR $3) FROM " + table + " WHERE id = $1",
			insert: "INSERT INTO " + table + " (user_id, idempotency_key, " + fields + ", image, image_type, image_size, body_hash)" +
				" VALUES (" + strings.Join(params, ", ") + ")" +
				" ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
			byKey: "SELECT id, body_hash FROM " + table + " WHERE user_id = $1 AND idempotency_key = $2",
		}
	}
	return s
}

// document is a stored card, without its image bytes.
type document struct {
	ID        int64
	Kind      string
	Fields    map[string]any // by field name; dates as "YYYY-MM-DD"; nil when absent
	ImageType string
	ImageSize int
	CreatedAt time.Time
}

// MarshalJSON writes the document as one flat object, as the seed's API did:
// {"id": 1, "numero_permis": "AB123456", "nom_fr": "Doe", ..., "image_type": "image/png", ...}.
func (d document) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(d.Fields)+6)
	for k, v := range d.Fields {
		m[k] = v
	}
	m["id"] = d.ID
	m["kind"] = d.Kind
	m["image_type"] = d.ImageType
	m["image_size"] = d.ImageSize
	m["image_url"] = fmt.Sprintf("/%s/%d/image", d.Kind, d.ID)
	m["created_at"] = d.CreatedAt.UTC().Format(time.RFC3339)
	return json.Marshal(m)
}

// scanDocument reads a row of kindSQL.list or kindSQL.get.
func scanDocument(k *kind, row pgx.Row) (document, error) {
	d := document{Kind: k.name, Fields: make(map[string]any, len(k.fields))}
	dest := []any{&d.ID}
	value := make([]func() any, len(k.fields))
	for i, f := range k.fields {
		switch f.typ {
		case dateField:
			var v pgtype.Date
			dest = append(dest, &v)
			value[i] = func() any {
				if !v.Valid {
					return nil
				}
				return v.Time.Format(dateLayout)
			}
		case intField:
			var v *int32
			dest = append(dest, &v)
			value[i] = func() any { return v }
		case listField:
			var v []string
			dest = append(dest, &v)
			value[i] = func() any { return v }
		default:
			var v *string
			dest = append(dest, &v)
			value[i] = func() any { return v }
		}
	}
	dest = append(dest, &d.ImageType, &d.ImageSize, &d.CreatedAt)
	if err := row.Scan(dest...); err != nil {
		return document{}, err
	}
	for i, f := range k.fields {
		d.Fields[f.name] = value[i]()
	}
	return d, nil
}

// list returns up to limit documents of kind k that v may read, with an id below after (0:
// from the newest), newest first, and whether more follow.
func (s *store) list(ctx context.Context, k *kind, v viewer, after int64, limit int) (docs []document, more bool, err error) {
	if after <= 0 {
		after = math.MaxInt64
	}
	scope, owner := v.scope()
	args := append([]any{after, limit + 1}, owner...)
	err = s.c.Replica().Do(seeWrites(ctx), func(ctx context.Context, q pool.Querier) error {
		rows, err := q.Query(ctx, s.sql[k].list[scope], args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		docs = []document{}
		for rows.Next() {
			d, err := scanDocument(k, rows)
			if err != nil {
				return err
			}
			docs = append(docs, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, false, err
	}
	if len(docs) > limit {
		return docs[:limit], true, nil
	}
	return docs, false, nil
}

// seeWrites marks ctx for the document reads: they go to a replica that has replayed every write
// acknowledged before they began (an upload is seen by the next request's list or get, from
// any user), else to the primary. A replica down, lagging or failing mid-read moves the read
// to another member (see [pool.Reader]).
func seeWrites(ctx context.Context) context.Context { return pool.WithReadYourWrites(ctx) }

// get returns one document that v may read, or errNotFound (also when it is another user's).
func (s *store) get(ctx context.Context, k *kind, v viewer, id int64) (document, error) {
	scope, owner := v.scope()
	d, err := scanDocument(k, s.c.Replica().QueryRow(seeWrites(ctx), s.sql[k].get[scope], append([]any{id}, owner...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, errNotFound
	}
	return d, err
}

// image returns the content type and size of the image of a document v may read, or
// errNotFound. Its bytes are read with imageChunk.
func (s *store) image(ctx context.Context, k *kind, v viewer, id int64) (contentType string, size int, err error) {
	scope, owner := v.scope()
	err = s.c.Replica().QueryRow(seeWrites(ctx), s.sql[k].image[scope], append([]any{id}, owner...)...).Scan(&contentType, &size)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, errNotFound
	}
	return contentType, size, err
}

// imageChunk reads n bytes of document id's image from offset off into c (fewer at its end),
// or answers errNotFound. It does not check who reads: image does, first (a document never
// changes owner).
func (s *store) imageChunk(ctx context.Context, k *kind, id int64, off, n int, c *chunk) error {
	err := s.c.Replica().QueryRow(seeWrites(ctx), s.sql[k].chunk, id, off+1, n).Scan(c)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNotFound
	}
	return err
}

// upload is a validated upload: the card's fields (from validate) and its image.
type upload struct {
	fields      map[string]any
	image       []byte
	contentType string
	hash        []byte // bodyHash of the fields and image
}

// create stores an upload once per (user, kind, idempotency key) and returns the document's
// id, and created = false when an earlier request with that key had already stored it. A key
// that stored an upload with another body hash gives errKeyReused.
//
// The insert-or-get runs in p.Tx, which retries it whole after a conflict or a connection lost
// before COMMIT. When the COMMIT itself was lost (*pool.AmbiguousCommitError), the key is
// looked up again: found, the upload committed. Not found, it did not, and the transaction
// runs once more: that is safe, because the key makes it idempotent (were the first COMMIT
// still in flight, the second INSERT would wait for it on the unique index and then find its
// row). Should that be ambiguous too, create gives up with errCommitUnknown.
func (s *store) create(ctx context.Context, k *kind, userID int64, key string, up upload) (id int64, created bool, err error) {
	args := []any{userID, key}
	for _, f := range k.fields {
		v := up.fields[f.name]
		if t, ok := v.(time.Time); ok {
			v = pgtype.Date{Time: t, Valid: true}
		}
		args = append(args, v)
	}
	args = append(args, up.image, up.contentType, len(up.image), up.hash)

	q := s.sql[k]
	for attempt := 1; ; attempt++ {
		err = s.c.Tx(ctx, pgx.TxOptions{}, func(tx pgx.Tx) error {
			created = false
			if err := s.withinQuota(ctx, tx, q, userID, key, int64(len(up.image))); err != nil {
				return err
			}
			err := tx.QueryRow(ctx, q.insert, args...).Scan(&id)
			if err == nil {
				created = true
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			// ON CONFLICT DO NOTHING returned no row: the key was used before.
			var stored []byte
			if err := tx.QueryRow(ctx, q.byKey, userID, key).Scan(&id, &stored); err != nil {
				return err
			}
			return sameBody(stored, up.hash)
		})
		var ambiguous *pool.AmbiguousCommitError
		if !errors.As(err, &ambiguous) {
			return id, created, err
		}
		s.log.Warn("docapi: commit outcome unknown, looking the idempotency key up", "kind", k.name, "err", err)
		found, stored, lerr := s.byKey(ctx, k, userID, key)
		switch {
		case lerr == nil:
			// Committed by this request (created) or by an earlier one with this key.
			if !created {
				return found, false, sameBody(stored, up.hash)
			}
			return found, true, nil
		case !errors.Is(lerr, errNotFound):
			return 0, false, fmt.Errorf("%w: %w", errCommitUnknown, lerr)
		case attempt == 2:
			return 0, false, fmt.Errorf("%w: %w", errCommitUnknown, err)
		}
		countRetry(ctx)
		s.log.Info("docapi: the upload had not committed, running it again", "kind", k.name)
	}
}

// withinQuota returns errQuota when storing size more bytes of images would take the user past
// the quota, unless key already stored an upload (a client's retry answers as before). Uploads
// of one user are serialised by a transaction-scoped advisory lock, so that concurrent uploads
// cannot each see room for themselves.
func (s *store) withinQuota(ctx context.Context, tx pgx.Tx, q kindSQL, userID int64, key string, size int64) error {
	if s.quota <= 0 {
		return nil
	}
	var id int64
	var stored []byte
	switch err := tx.QueryRow(ctx, q.byKey, userID, key).Scan(&id, &stored); {
	case err == nil:
		return nil
	case !errors.Is(err, pgx.ErrNoRows):
		return err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('docapi.quota'), ($1 % 2147483647)::int)", userID); err != nil {
		return err
	}
	var used int64
	if err := tx.QueryRow(ctx, s.usedSQL, userID).Scan(&used); err != nil {
		return err
	}
	if used+size > s.quota {
		return errQuota
	}
	return nil
}

// sameBody answers errKeyReused when the body hash stored under a key differs from this
// upload's. A row stored before hashes were kept (stored is nil) is taken as matching.
func sameBody(stored, hash []byte) error {
	if stored != nil && !bytes.Equal(stored, hash) {
		return errKeyReused
	}
	return nil
}

// byKey finds the document a user uploaded under an idempotency key and its body hash, or
// errNotFound.
func (s *store) byKey(ctx context.Context, k *kind, userID int64, key string) (id int64, hash []byte, err error) {
	err = s.c.Primary().Idempotent().QueryRow(ctx, s.sql[k].byKey, userID, key).Scan(&id, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, errNotFound
	}
	return id, hash, err
}

// saveUser creates a user or sets its password hash and admin flag. When either changes, the
// user's tokens are revoked (in the same statement). Repeating it is harmless.
func (s *store) saveUser(ctx context.Context, email string, passwordHash []byte, admin bool) error {
	_, err := s.c.Primary().Idempotent().Exec(ctx, `WITH old AS (SELECT id, password_hash, admin FROM users WHERE email = $1),
		saved AS (INSERT INTO users (email, password_hash, admin) VALUES ($1, $2, $3)
			ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, admin = EXCLUDED.admin)
		DELETE FROM tokens WHERE user_id IN (SELECT id FROM old WHERE password_hash <> $2 OR admin <> $3)`,
		email, string(passwordHash), admin)
	return err
}

// userByEmail returns a user's id and password hash, or errNotFound.
func (s *store) userByEmail(ctx context.Context, email string) (id int64, passwordHash []byte, err error) {
	var h string
	err = s.c.Primary().Idempotent().QueryRow(ctx, `SELECT id, password_hash FROM users WHERE email = $1`, email).Scan(&id, &h)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil, errNotFound
	}
	return id, []byte(h), err
}

// saveToken stores a token's hash for a user until expires, and drops the user's expired
// tokens. Repeating it is harmless (the hash is random and unique).
func (s *store) saveToken(ctx context.Context, hash []byte, userID int64, expires time.Time) error {
	q := s.c.Primary().Idempotent()
	if _, err := q.Exec(ctx, `DELETE FROM tokens WHERE user_id = $1 AND expires_at <= now()`, userID); err != nil {
		return err
	}
	_, err := q.Exec(ctx, `INSERT INTO tokens (hash, user_id, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (hash) DO NOTHING`, hash, userID, expires)
	return err
}

// userByToken returns the user a token hash belongs to, or errNotFound when it is unknown,
// expired or revoked.
func (s *store) userByToken(ctx context.Context, hash []byte) (viewer, error) {
	var v viewer
	err := s.c.Primary().Idempotent().QueryRow(ctx, `SELECT t.user_id, u.admin FROM tokens t JOIN users u ON u.id = t.user_id
		WHERE t.hash = $1 AND t.expires_at > now()`, hash).Scan(&v.id, &v.admin)
	if errors.Is(err, pgx.ErrNoRows) {
		return viewer{}, errNotFound
	}
	return v, err
}

// revokeToken deletes a token, so that it no longer authenticates. Repeating it is harmless.
func (s *store) revokeToken(ctx context.Context, hash []byte) error {
	_, err := s.c.Primary().Idempotent().Exec(ctx, `DELETE FROM tokens WHERE hash = $1`, hash)
	return err
}
