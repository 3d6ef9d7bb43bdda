-- Audiences (package campaigns): static lists of contacts and dynamic segments (a filter over
-- contact fields and attributes, stored as its source text and compiled when it is read).

-- (workspace_id, id) keys let list_members reference a list and a contact of the SAME workspace,
-- so no row can put one workspace's contact in another's list. The contacts one also serves the
-- audience walk, which reads a workspace's contacts in id order.
ALTER TABLE contacts ADD CONSTRAINT contacts_workspace_id_key UNIQUE (workspace_id, id);

-- One email per address: the walk looks up the other contacts with the same address (compared
-- case-insensitively, as the suppression list hashes it) and a lower id.
CREATE INDEX contacts_email_lower_idx ON contacts (workspace_id, lower(email), id);

CREATE TABLE lists (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description   text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name),
    UNIQUE (workspace_id, id)
);

-- The primary key walks one list in contact order; list_members_contact_idx finds a contact's
-- lists (and answers "is this contact in one of these lists" from the index alone).
CREATE TABLE list_members (
    workspace_id  bigint NOT NULL,
    list_id       bigint NOT NULL,
    contact_id    bigint NOT NULL,
    added_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, contact_id),
    FOREIGN KEY (workspace_id, list_id) REFERENCES lists (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, contact_id) REFERENCES contacts (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX list_members_contact_idx ON list_members (contact_id, list_id);

CREATE TABLE segments (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  bigint NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    filter        text NOT NULL CHECK (octet_length(filter) <= 4096),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);
