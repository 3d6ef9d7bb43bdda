-- Campaigns (package campaigns): sender identities, campaigns, and the per-recipient send log.
-- See campaigns/doc.go for the states, the fan-out and the batch sending.

-- A sender identity of a workspace: who campaigns come from, and the postal address every
-- marketing email must show.
CREATE TABLE senders (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id    bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name            text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    from_address    text NOT NULL,
    from_name       text NOT NULL DEFAULT '',
    reply_to        text NOT NULL DEFAULT '',
    postal_address  text NOT NULL CHECK (postal_address <> '' AND char_length(postal_address) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE TABLE campaigns (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id       bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name               text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    purpose            text NOT NULL,                 -- consent purpose (name) checked at each hand-off
    template_name      text NOT NULL,
    template_version   int NOT NULL,                  -- frozen: a version is immutable
    sender_id          bigint NOT NULL REFERENCES senders (id),
    audience           jsonb NOT NULL,                -- campaigns.Audience
    -- Schedule: now, at send_at, or at local_time on local_date in each recipient's time zone
    -- (timezone of the contact, else fallback_timezone).
    schedule_kind      text NOT NULL DEFAULT 'now' CHECK (schedule_kind IN ('now', 'at', 'local_time')),
    send_at            timestamptz,
    local_date         date,
    local_time         time,
    fallback_timezone  text NOT NULL DEFAULT 'UTC',
    -- Throttle: messages per second overall and per recipient domain (0: no limit).
    rate_per_second    int NOT NULL DEFAULT 0 CHECK (rate_per_second >= 0),
    domain_rate        int NOT NULL DEFAULT 0 CHECK (domain_rate >= 0),
    status             text NOT NULL DEFAULT 'draft'
                       CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    -- Fan-out progress: the last contact id whose page is committed, and whether it is done.
    fanout_after       bigint NOT NULL DEFAULT 0,
    fanout_done        boolean NOT NULL DEFAULT false,
    fanout_at          timestamptz,                   -- last fan-out progress (stale: resumed)
    audience_size      bigint NOT NULL DEFAULT 0,     -- recipients written by the fan-out
    -- Per-second throttle: messages already given a send time, per start instant (unix seconds of
    -- a recipient's send_after, or of started_at), so batch send times survive a restart.
    throttle_plan      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    scheduled_at       timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    CHECK (schedule_kind <> 'at' OR send_at IS NOT NULL),
    CHECK (schedule_kind <> 'local_time' OR (local_date IS NOT NULL AND local_time IS NOT NULL))
);
CREATE INDEX campaigns_workspace_idx ON campaigns (workspace_id, id DESC);
CREATE INDEX campaigns_active_idx ON campaigns (status) WHERE status IN ('scheduled', 'sending', 'paused');

-- The send log: one row per recipient (one per address) of a campaign. A batch send job names a
-- range of ids of one campaign; a row is claimed (status sending, claimed_until a lease) before
-- its message is handed to SMTP, and its outcome is committed right after the relay's answer.
CREATE TABLE campaign_recipients (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id    bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    contact_id     bigint NOT NULL,
    address        text NOT NULL,
    send_after     timestamptz,                       -- local-time schedules
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'sending', 'sent', 'suppressed', 'deferred', 'failed', 'cancelled')),
    reason         text NOT NULL DEFAULT '',
    claimed_until  timestamptz,
    attempts       int NOT NULL DEFAULT 0,
    message_id     text NOT NULL DEFAULT '',
    smtp_code      int,
    smtp_reply     text NOT NULL DEFAULT '',
    sent_at        timestamptz,
    updated_at     timestamptz,
    UNIQUE (campaign_id, contact_id)
);
CREATE INDEX campaign_recipients_open_idx ON campaign_recipients (campaign_id, id)
    WHERE status IN ('queued', 'sending', 'deferred');
