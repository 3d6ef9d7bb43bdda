-- Data-subject requests with their deadlines (package consent, privacy_requests.go), and the
-- ledger source of an objection to direct marketing (consent/object.go).

-- One request a person made under their privacy rights. due_at is fixed at received_at + 30 days
-- when the request is recorded. contact_id is the contact the request is about, when Herald holds
-- one; it becomes NULL when that contact is deleted (erasure keeps the request, pseudonymous).
-- note is staff's free text and may name the person: erasure must clear it with the contact.
CREATE TABLE privacy_requests (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    contact_id    bigint,
    kind          text NOT NULL CHECK (kind IN ('access', 'export', 'erase', 'rectify', 'restrict', 'object')),
    status        text NOT NULL DEFAULT 'received'
                  CHECK (status IN ('received', 'in_progress', 'completed', 'rejected')),
    channel       text NOT NULL CHECK (channel IN ('api', 'preference_centre', 'email')),
    received_at   timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,
    completed_at  timestamptz,
    handled_by    text NOT NULL DEFAULT '',
    note          text NOT NULL DEFAULT '' CHECK (char_length(note) <= 2000),
    updated_at    timestamptz NOT NULL,
    -- The contact must be the workspace's own; deleting it keeps the request.
    FOREIGN KEY (workspace_id, contact_id) REFERENCES contacts (workspace_id, id) ON DELETE SET NULL (contact_id),
    CHECK (due_at > received_at),
    CHECK ((status IN ('completed', 'rejected')) = (completed_at IS NOT NULL))
);
CREATE INDEX privacy_requests_workspace_idx ON privacy_requests (workspace_id, id);
CREATE INDEX privacy_requests_contact_idx ON privacy_requests (workspace_id, contact_id, kind) WHERE contact_id IS NOT NULL;
-- Open requests by deadline: the overdue gauge counts those whose due_at has passed.
CREATE INDEX privacy_requests_open_due_idx ON privacy_requests (due_at) WHERE status IN ('received', 'in_progress');

-- An objection to direct marketing withdraws every marketing grant with source 'objection'.
ALTER TABLE consent_events DROP CONSTRAINT consent_events_source_check;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_source_check
    CHECK (source IN ('api', 'form', 'import', 'preference_centre', 'one_click', 'complaint', 'admin', 'objection'));
