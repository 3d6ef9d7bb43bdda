-- Workspaces are the CRM customers; every other row belongs to one.
CREATE TABLE workspaces (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the random secret; the secret is shown once.
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    prefix        text NOT NULL,
    hash          bytea NOT NULL UNIQUE,
    scopes        text[] NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id);

-- Contacts as the CRM knows them, keyed by the CRM's own id.
CREATE TABLE contacts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    external_id   text NOT NULL,
    email         text NOT NULL,
    name          text NOT NULL DEFAULT '',
    locale        text NOT NULL DEFAULT '',
    timezone      text NOT NULL DEFAULT '',
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, external_id)
);
CREATE INDEX contacts_email_idx ON contacts (workspace_id, email);

-- The suppression list: addresses no mail goes to (later issues add reasons and keyed hashes).
CREATE TABLE suppressions (
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    address       text NOT NULL,
    reason        text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'manual', 'erased')),
    detail        text NOT NULL DEFAULT '',
    message_id    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, address)
);

-- Messages: one row per email, with the Message-ID fixed at insert so retries reuse it. history is
-- the list of status changes ({status, attempt, smtp_code, enhanced_code, detail, at}), kept on
-- the row so that a status change is one HOT update (fillfactor leaves room; no indexed column
-- changes) instead of an update plus an insert into a second table.
CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    workspace_id     bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    stream           text NOT NULL DEFAULT 'transactional' CHECK (stream IN ('transactional', 'marketing')),
    contact_id       bigint REFERENCES contacts (id) ON DELETE SET NULL,
    to_address       text NOT NULL,
    to_name          text NOT NULL DEFAULT '',
    from_address     text NOT NULL,
    from_name        text NOT NULL DEFAULT '',
    reply_to         text NOT NULL DEFAULT '',
    subject          text NOT NULL,
    html_body        text NOT NULL DEFAULT '',
    text_body        text NOT NULL DEFAULT '',
    headers          jsonb NOT NULL DEFAULT '{}'::jsonb,
    message_id       text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sending', 'sent', 'deferred', 'failed', 'suppressed')),
    status_reason    text NOT NULL DEFAULT '',
    history          jsonb NOT NULL DEFAULT '[]'::jsonb,
    idempotency_key  text,
    request_hash     bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (workspace_id, idempotency_key)
) WITH (fillfactor = 80);
CREATE INDEX messages_workspace_created_idx ON messages (workspace_id, created_at DESC);
