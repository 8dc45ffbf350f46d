-- Users, bearer tokens, and one table per document kind: driving licences (permis), national
-- identity cards (cin) and vehicle registration cards (gris, carte grise).
--
-- Every statement is idempotent (IF NOT EXISTS), so that running this file twice is harmless;
-- migrate.go also records it in schema_migrations and runs it at most once.

CREATE TABLE IF NOT EXISTS users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    password_hash text NOT NULL, -- bcrypt
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tokens (
    hash       bytea PRIMARY KEY, -- SHA-256 of the bearer token; the token itself is not stored
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX IF NOT EXISTS tokens_user_id_idx ON tokens (user_id);

-- Common to the three document tables: who uploaded it, under which idempotency key (unique
-- per user and kind, so that a retried upload is stored once), and the scanned image.

CREATE TABLE IF NOT EXISTS permis (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    idempotency_key text NOT NULL,
    numero_permis   text NOT NULL,
    nom_fr          text NOT NULL,
    prenom_fr       text NOT NULL,
    nom_ar          text,
    prenom_ar       text,
    date_naissance  date NOT NULL,
    lieu_naissance  text,
    date_delivrance date NOT NULL,
    date_expiration date,
    categories      text[] NOT NULL,
    image           bytea NOT NULL,
    image_type      text NOT NULL,
    image_size      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key),
    CHECK (date_expiration IS NULL OR date_expiration >= date_delivrance),
    CHECK (image_size = octet_length(image))
);

CREATE TABLE IF NOT EXISTS cin (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users (id),
    idempotency_key text NOT NULL,
    numero_cin      text NOT NULL,
    nom_fr          text NOT NULL,
    prenom_fr       text NOT NULL,
    nom_ar          text,
    prenom_ar       text,
    date_naissance  date NOT NULL,
    lieu_naissance  text,
    sexe            text CHECK (sexe IN ('M', 'F')),
    adresse         text,
    date_expiration date,
    image           bytea NOT NULL,
    image_type      text NOT NULL,
    image_size      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key),
    CHECK (image_size = octet_length(image))
);

CREATE TABLE IF NOT EXISTS gris (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id                  bigint NOT NULL REFERENCES users (id),
    idempotency_key          text NOT NULL,
    numero_immatriculation   text NOT NULL,
    proprietaire             text NOT NULL,
    proprietaire_ar          text,
    adresse                  text,
    marque                   text NOT NULL,
    modele                   text,
    numero_chassis           text,
    carburant                text,
    puissance_fiscale        integer CHECK (puissance_fiscale BETWEEN 1 AND 99),
    date_mise_en_circulation date,
    date_validite            date,
    image                    bytea NOT NULL,
    image_type               text NOT NULL,
    image_size               integer NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key),
    CHECK (date_validite IS NULL OR date_mise_en_circulation IS NULL
           OR date_validite >= date_mise_en_circulation),
    CHECK (image_size = octet_length(image))
);
