-- Bounce and complaint feedback (tracking/feedback.go). See tracking/doc.go.

-- One row per bounce or complaint report, whatever brought it: a DSN or ARF report to the VERP
-- address, or a provider's webhook. The address is kept only as its keyed hash (the hash of the
-- suppression list); campaign_id and recipient_id name the campaign send it is about, message_id
-- a transactional or single marketing message. provider_event_id makes a provider's retries of
-- one event count once.
CREATE TABLE feedback_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id       bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind               text NOT NULL CHECK (kind IN ('hard_bounce', 'soft_bounce', 'complaint')),
    source             text NOT NULL CHECK (source IN ('dsn', 'arf', 'ses', 'sendgrid', 'postmark')),
    address_hash       bytea NOT NULL,
    campaign_id        bigint,
    recipient_id       bigint,
    message_id         uuid,
    status             text NOT NULL DEFAULT '' CHECK (char_length(status) <= 32),
    detail             text NOT NULL DEFAULT '' CHECK (char_length(detail) <= 1000),
    provider_event_id  text CHECK (char_length(provider_event_id) BETWEEN 1 AND 200),
    at                 timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, source, provider_event_id)
);
CREATE INDEX feedback_events_address_idx ON feedback_events (workspace_id, address_hash, kind, at);
CREATE INDEX feedback_events_campaign_idx ON feedback_events (campaign_id, kind) WHERE campaign_id IS NOT NULL;

-- A workspace's webhook credentials: SendGrid's verification key (PEM or base64 DER of an ECDSA
-- P-256 public key), Postmark's basic-auth user and the SHA-256 of its password (a random secret
-- the workspace chose, so a fast hash suffices), and the SNS topic ARNs whose SES notifications
-- are accepted. Secrets are never returned by the API.
CREATE TABLE feedback_webhooks (
    workspace_id            bigint PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    sendgrid_public_key     text NOT NULL DEFAULT '',
    postmark_user           text NOT NULL DEFAULT '',
    postmark_password_hash  bytea,
    ses_topic_arns          text[] NOT NULL DEFAULT '{}',
    updated_at              timestamptz NOT NULL DEFAULT now()
);
