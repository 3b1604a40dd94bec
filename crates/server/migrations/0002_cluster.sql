-- What instances need of each other while serving (SPEC §9): who holds a
-- session (with the order of claims, so a late write never undoes a newer
-- login), how to reach it for invitations, and a session bus.

-- Each login's claim on its user's one presence row takes the next number:
-- a row is only ever replaced by a higher claim.
CREATE SEQUENCE presence_claims;
ALTER TABLE presence
    ADD COLUMN claim      BIGINT NOT NULL DEFAULT nextval('presence_claims'),
    ADD COLUMN public_key TEXT NOT NULL DEFAULT '',
    ADD COLUMN reach      JSONB NOT NULL DEFAULT '{}';

-- Events for a session on another instance (replaced, an invitation, an
-- answer): the holder's instance takes its rows, on a NOTIFY naming it or
-- at its next poll, and deletes them as it takes them.
CREATE TABLE session_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id TEXT NOT NULL,
    username    TEXT NOT NULL,
    session_id  BIGINT NOT NULL,
    event       JSONB NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX session_events_instance ON session_events (instance_id, id);
