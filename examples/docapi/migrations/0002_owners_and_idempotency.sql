-- Issue 16: per-user access and idempotency keys that mean one thing.
--
-- users.admin marks a user who may read every user's documents (set at start with
-- DOCAPI_USER_ADMIN); everyone else reads only their own. body_hash is the SHA-256 of an upload's
-- validated fields and image (see upload.go): a key reused with another body is refused. Rows
-- stored before this migration have no hash and are taken as matching. The (user_id, id) indexes
-- serve the owner-scoped lists, newest first.
--
-- Idempotent like 0001, so that an ambiguous commit is settled by running it again.

ALTER TABLE users ADD COLUMN IF NOT EXISTS admin boolean NOT NULL DEFAULT false;

ALTER TABLE permis ADD COLUMN IF NOT EXISTS body_hash bytea;
ALTER TABLE cin    ADD COLUMN IF NOT EXISTS body_hash bytea;
ALTER TABLE gris   ADD COLUMN IF NOT EXISTS body_hash bytea;

CREATE INDEX IF NOT EXISTS permis_user_id_id_idx ON permis (user_id, id DESC);
CREATE INDEX IF NOT EXISTS cin_user_id_id_idx    ON cin (user_id, id DESC);
CREATE INDEX IF NOT EXISTS gris_user_id_id_idx   ON gris (user_id, id DESC);
