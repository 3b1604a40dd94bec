-- Invitations across instances (SPEC §3, §9). 0001's table allowed one row
-- per (inviter, invitee) and named no sessions; nothing wrote it. An
-- invitation is bound to the two sessions that made and received it
-- (instance and session id: session ids are per instance), and its id,
-- from one sequence, is unique across the cluster. Answer, expiry and a
-- session's end each take the row with DELETE ... RETURNING, so exactly
-- one of them ends it.
DROP TABLE invitations;
CREATE SEQUENCE invitation_ids;
CREATE TABLE invitations (
    id            BIGINT PRIMARY KEY,
    inviter       TEXT NOT NULL,
    from_instance TEXT NOT NULL,
    from_session  BIGINT NOT NULL,
    invitee       TEXT NOT NULL,
    to_instance   TEXT NOT NULL,
    to_session    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL
);
CREATE INDEX invitations_expiry ON invitations (expires_ms);
CREATE INDEX invitations_from ON invitations (from_instance, from_session);
CREATE INDEX invitations_to ON invitations (to_instance, to_session);

-- One row per invitation delivered, kept for the invitee's rate-limit
-- window: every inviter's instance counts the same rows, so the limit on
-- invitations one user receives holds across the cluster. Rows older than
-- the window are deleted by the expiry drivers.
CREATE TABLE invitation_receipts (
    invite  BIGINT PRIMARY KEY,
    invitee TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX invitation_receipts_invitee ON invitation_receipts (invitee, at_ms);
CREATE INDEX invitation_receipts_at ON invitation_receipts (at_ms);
