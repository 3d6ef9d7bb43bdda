-- The consent ledger (package consent). See consent/doc.go for the shape.

-- Per-workspace consent settings: the public form key of the double opt-in form, the privacy
-- notice the preference centre links to, and the sender of confirmation emails.
CREATE TABLE consent_settings (
    workspace_id    bigint PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    form_key        text NOT NULL UNIQUE DEFAULT ('fk_' || replace(gen_random_uuid()::text, '-', '')),
    privacy_url     text NOT NULL DEFAULT '',
    confirm_from    text NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Purposes (topics) a contact consents to, each with its current notice text and version. Every
-- notice version is kept in purpose_notices, so a ledger event's notice_version names the exact
-- text the person was shown.
CREATE TABLE purposes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id    bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    title           text NOT NULL,
    description     text NOT NULL DEFAULT '',
    notice          text NOT NULL,
    notice_version  int NOT NULL DEFAULT 1 CHECK (notice_version >= 1),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE purpose_notices (
    purpose_id      bigint NOT NULL REFERENCES purposes (id) ON DELETE CASCADE,
    version         int NOT NULL,
    notice          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose_id, version)
);

-- The ledger: append-only, hash-chained per workspace. Each event's hash is SHA-256 over the
-- previous event's hash and the event's canonical form (computed in Go, consent/chain.go). Personal
-- evidence (IP, user agent, address) lives in consent_evidence and enters the chain only as a
-- salted commitment, so erasing it leaves the chain verifiable. contact_id has no foreign key on
-- purpose: events outlive the contact row.
CREATE TABLE consent_events (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id         bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    seq                  bigint NOT NULL CHECK (seq >= 1),
    contact_id           bigint NOT NULL,
    purpose              text NOT NULL,
    action               text NOT NULL CHECK (action IN ('granted', 'withdrawn')),
    source               text NOT NULL CHECK (source IN ('api', 'form', 'import', 'preference_centre',
                                                          'one_click', 'complaint', 'admin')),
    lawful_basis         text NOT NULL CHECK (lawful_basis IN ('consent', 'soft_opt_in', 'contract')),
    notice_version       int NOT NULL DEFAULT 0,
    actor                text NOT NULL,
    proof                jsonb NOT NULL DEFAULT '{}'::jsonb,
    occurred_at          timestamptz NOT NULL,
    recorded_at          timestamptz NOT NULL,
    expires_at           timestamptz,
    evidence_commitment  bytea NOT NULL,
    prev_hash            bytea NOT NULL,
    hash                 bytea NOT NULL,
    UNIQUE (workspace_id, seq)
);
CREATE INDEX consent_events_contact_idx ON consent_events (workspace_id, contact_id, id);

-- Append-only: no UPDATE, no TRUNCATE, and no DELETE except the cascade of a deleted workspace
-- (the workspace row is already gone when the cascade reaches its events).
CREATE FUNCTION consent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER consent_events_no_update BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();

-- The erasable evidence of an event, committed to by consent_events.evidence_commitment =
-- SHA-256(salt || canonical evidence). Erasure deletes the row (salt included).
CREATE TABLE consent_evidence (
    event_id      bigint PRIMARY KEY REFERENCES consent_events (id) ON DELETE CASCADE,
    workspace_id  bigint NOT NULL,
    contact_id    bigint NOT NULL,
    salt          bytea NOT NULL,
    ip            text NOT NULL DEFAULT '',
    user_agent    text NOT NULL DEFAULT '',
    address       text NOT NULL DEFAULT ''
);
CREATE INDEX consent_evidence_contact_idx ON consent_evidence (workspace_id, contact_id);

-- The head of each workspace's chain; appending an event locks it, so events of one workspace are
-- chained one at a time.
CREATE TABLE consent_chain_heads (
    workspace_id  bigint PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    seq           bigint NOT NULL,
    hash          bytea NOT NULL
);

-- The current state per (contact, purpose), written in the transaction that appends the event.
-- A marketing send locks its row FOR SHARE from the consent decision until the SMTP hand-off is
-- recorded, so a withdrawal (which updates the row) waits for it, or the send sees the withdrawal.
CREATE TABLE consent_state (
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    contact_id    bigint NOT NULL,
    purpose       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('granted', 'withdrawn')),
    event_id      bigint NOT NULL,
    source        text NOT NULL,
    updated_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    PRIMARY KEY (workspace_id, contact_id, purpose)
);

-- Double opt-in requests: a confirmation email is sent; only its link (POSTed) grants consent.
-- The token is stored as its SHA-256. Unconfirmed requests expire.
CREATE TABLE subscribe_requests (
    id              uuid PRIMARY KEY,
    workspace_id    bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL UNIQUE,
    address         text NOT NULL,
    name            text NOT NULL DEFAULT '',
    purposes        text[] NOT NULL,
    notice_versions int[] NOT NULL,
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT '',
    message_id      uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    confirmed_at    timestamptz
);
CREATE INDEX subscribe_requests_expiry_idx ON subscribe_requests (expires_at) WHERE confirmed_at IS NULL;

-- The suppression list, keyed by a keyed hash (HMAC-SHA256 with HERALD_HASH_KEY) of the normalised
-- address so that an entry survives the erasure of the address itself (address is then emptied).
-- It replaces the table of 001, which no deployment has filled: it was keyed by the clear address.
DROP TABLE suppressions;
CREATE TABLE suppressions (
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    address_hash  bytea NOT NULL,
    address       text,
    reason        text NOT NULL CHECK (reason IN ('unsubscribed_all', 'hard_bounce', 'complaint', 'erased', 'manual')),
    detail        text NOT NULL DEFAULT '',
    message_id    uuid,
    actor         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, address_hash)
);
CREATE INDEX suppressions_workspace_created_idx ON suppressions (workspace_id, created_at DESC, address_hash);

-- Audit of privileged actions (issue 7 extends it): append-only.
CREATE TABLE audit_log (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    actor         text NOT NULL,
    action        text NOT NULL,
    target        text NOT NULL DEFAULT '',
    detail        jsonb NOT NULL DEFAULT '{}'::jsonb,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_workspace_idx ON audit_log (workspace_id, id DESC);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Marketing messages name the purpose their consent is checked against.
ALTER TABLE messages ADD COLUMN purpose text NOT NULL DEFAULT '';
ALTER TABLE messages ADD CONSTRAINT messages_marketing_purpose
    CHECK (stream <> 'marketing' OR purpose <> '');
