-- Retention (consent/retention*.go and a retention.go in tracking, campaigns and mailer): each
-- workspace's policy, workspace soft deletion, and the indexes the retention job's batches walk.
-- See README, "Retention".

-- A workspace's retention policy, in days. A workspace without a row has the defaults of the
-- configuration (HERALD_RETENTION_*). The bounds are the promises of the privacy policy: a
-- workspace may keep data for less time, never for more.
CREATE TABLE retention_policies (
    workspace_id     bigint PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    opted_out_days   int NOT NULL CHECK (opted_out_days BETWEEN 1 AND 30),
    tracking_days    int NOT NULL CHECK (tracking_days BETWEEN 1 AND 395),
    body_days        int NOT NULL CHECK (body_days BETWEEN 1 AND 30),
    deletion_grace_days int NOT NULL CHECK (deletion_grace_days BETWEEN 1 AND 30),
    updated_at       timestamptz NOT NULL
);

-- A deleted workspace: its API keys stop working at once, and the retention job deletes it (and,
-- by cascade, everything it holds) once deletion_grace_days have passed.
ALTER TABLE workspaces ADD COLUMN deleted_at timestamptz;
CREATE INDEX workspaces_deleted_idx ON workspaces (deleted_at) WHERE deleted_at IS NOT NULL;

-- A contact's campaign sends: the opted-out policy finds them by contact (the unique key
-- (campaign_id, contact_id) would need a probe per campaign of the workspace). contact_id never
-- changes, so the send path's updates stay HOT.
CREATE INDEX campaign_recipients_contact_idx ON campaign_recipients (contact_id);

-- Messages whose rendered content is still stored, by workspace and age: the body policy walks
-- only those, so emptied messages are never read again. Status updates do not change the
-- predicate's columns, so they stay HOT; emptying a message drops it from the index.
CREATE INDEX messages_body_kept_idx ON messages (workspace_id, created_at)
    WHERE html_body <> '' OR text_body <> '' OR headers <> '{}'::jsonb;
