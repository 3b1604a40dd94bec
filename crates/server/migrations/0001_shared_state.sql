-- The shared backend's schema (SPEC §9). Applied once, in one transaction,
-- by src/pg/migrate.rs; never edit a released migration: add the next one.

-- Accounts: argon2id PHC strings, as in users.csv.
CREATE TABLE accounts (
    username   TEXT PRIMARY KEY,
    phc        TEXT NOT NULL CHECK (phc LIKE '$argon2id$%'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Resume tokens (tokens.rs semantics): only the SHA-256 digest is stored;
-- password_tag binds a token to the hash it was issued under, so passwd
-- invalidates it; removing the account removes its tokens.
CREATE TABLE resume_tokens (
    digest       BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    username     TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    password_tag TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_used_ms BIGINT NOT NULL
);
CREATE INDEX resume_tokens_user ON resume_tokens (username, last_used_ms DESC);

-- Presence: which instance holds each user's one session, with a lease the
-- instance renews; a killed instance's rows expire with their lease.
CREATE TABLE presence (
    username         TEXT PRIMARY KEY REFERENCES accounts (username) ON DELETE CASCADE,
    instance_id      TEXT NOT NULL,
    session_id       BIGINT NOT NULL,
    since_ms         BIGINT NOT NULL,
    lease_expires_ms BIGINT NOT NULL
);
CREATE INDEX presence_instance ON presence (instance_id);
CREATE INDEX presence_lease ON presence (lease_expires_ms);

-- Invitations: one pending per (inviter, invitee), gone at expiry. payload
-- holds what the invitation carries to the invitee's instance.
CREATE TABLE invitations (
    inviter    TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    invitee    TEXT NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    payload    JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (inviter, invitee)
);
CREATE INDEX invitations_expiry ON invitations (expires_ms);

-- Broadcasts: stored once, with an absolute expiry (Unix ms).
CREATE TABLE broadcasts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender     TEXT NOT NULL,
    text       TEXT NOT NULL,
    sent_ms    BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX broadcasts_expiry ON broadcasts (expires_ms);

-- One row per (recipient, broadcast) delivered and acknowledged: writing
-- it twice is a no-op (idempotent, whichever instance the recipient is on),
-- and an id committed late by another instance is not hidden behind a
-- "newest seen" mark.
CREATE TABLE broadcast_acks (
    recipient    TEXT NOT NULL,
    broadcast_id BIGINT NOT NULL REFERENCES broadcasts (id) ON DELETE CASCADE,
    PRIMARY KEY (recipient, broadcast_id)
);
CREATE INDEX broadcast_acks_broadcast ON broadcast_acks (broadcast_id);

-- Accounts that have acknowledged broadcasts at some time: the purge counts
-- an expired broadcast one of them never acknowledged as undelivered.
CREATE TABLE broadcast_recipients (
    recipient TEXT PRIMARY KEY
);

-- The cluster's one TLS identity, so one pin covers every instance: the
-- first instance stores its generated certificate, the others load it.
CREATE TABLE tls_identity (
    singleton  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    cert_pem   TEXT NOT NULL,
    key_pem    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
