-- Tracking (package tracking) and its consent (package consent). See tracking/doc.go.

-- Open and click tracking is its own purpose in the ledger, separate from marketing consent: a
-- workspace has at most one purpose of kind 'tracking', whose consent_state rows (purpose = its
-- name, 'tracking') say whether a contact allows the pixel and rewritten links. Campaigns cannot
-- be sent for it and the marketing lists of the preference centre do not show it as a topic.
ALTER TABLE purposes ADD COLUMN kind text NOT NULL DEFAULT 'marketing' CHECK (kind IN ('marketing', 'tracking'));
CREATE UNIQUE INDEX purposes_one_tracking_idx ON purposes (workspace_id) WHERE kind = 'tracking';

-- tracking_mode: opt_in (default: tracked only after a 'granted' event), opt_out (tracked unless
-- 'withdrawn') or off (never). tracking_full_ip keeps whole IP addresses instead of /24 and /48.
-- A soft bounce suppresses the address after soft_bounce_limit of them within soft_bounce_window.
ALTER TABLE consent_settings
    ADD COLUMN tracking_mode text NOT NULL DEFAULT 'opt_in' CHECK (tracking_mode IN ('opt_in', 'opt_out', 'off')),
    ADD COLUMN tracking_full_ip boolean NOT NULL DEFAULT false,
    ADD COLUMN soft_bounce_limit int NOT NULL DEFAULT 3 CHECK (soft_bounce_limit BETWEEN 1 AND 100),
    ADD COLUMN soft_bounce_window interval NOT NULL DEFAULT '7 days'
        CHECK (soft_bounce_window >= interval '1 hour' AND soft_bounce_window <= interval '90 days');

-- A transactional or single marketing message's number, named by its VERP bounce address
-- (bounces+TOKEN@domain): tokens carry integers, and the uuid does not fit one.
ALTER TABLE messages ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX messages_seq_idx ON messages (seq);

-- The links of a campaign's messages, each stored once per campaign: a click token names a row
-- by id and the redirect goes to its url, never to anything read from the request.
CREATE TABLE campaign_links (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    url          text NOT NULL CHECK (char_length(url) BETWEEN 1 AND 4096),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, url)
);

-- Opens and clicks, written in batches by COPY. ip is truncated (/24, /48) unless the workspace
-- keeps full addresses; machine marks proxy opens and scanner clicks (machine_reason says why).
CREATE TABLE tracking_events (
    workspace_id    bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    campaign_id     bigint NOT NULL,
    recipient_id    bigint NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('open', 'click')),
    link_id         bigint,
    at              timestamptz NOT NULL,
    ip              text NOT NULL DEFAULT '',
    user_agent      text NOT NULL DEFAULT '',
    machine         boolean NOT NULL DEFAULT false,
    machine_reason  text NOT NULL DEFAULT '',
    CHECK ((kind = 'click') = (link_id IS NOT NULL))
);
CREATE INDEX tracking_events_campaign_idx ON tracking_events (campaign_id, kind, recipient_id);
CREATE INDEX tracking_events_recipient_idx ON tracking_events (recipient_id);
CREATE INDEX tracking_events_at_idx ON tracking_events (at);
