-- Data-subject rights: export and erasure of one person's data (consent/rights.go and a rights.go
-- in each package that holds such data). See README, "Data-subject rights: export and erasure".

-- A contact's messages, for export and erasure: messages sent to a contact, and messages sent to a
-- bare address (contact_id NULL: transactional mail given "to", double opt-in confirmations),
-- found by the address as the suppression list compares it (lower case).
CREATE INDEX messages_contact_idx ON messages (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX messages_to_address_idx ON messages (workspace_id, lower(to_address)) WHERE contact_id IS NULL;

-- Files attached to a message (mailer/attachments.go), such as the JSON export a person asked
-- for from the preference centre. The send job says whether its message has any, so the send
-- path reads this table only for those. Erasure deletes the attachments of the person's messages.
CREATE TABLE message_attachments (
    message_id    uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    position      int NOT NULL CHECK (position >= 0),
    filename      text NOT NULL CHECK (filename ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$'),
    content_type  text NOT NULL CHECK (content_type ~ '^[a-z]+/[a-z0-9.+-]+$'),
    content       bytea NOT NULL CHECK (octet_length(content) <= 10485760),
    PRIMARY KEY (message_id, position)
);

-- Erasure empties ip and user_agent of a contact's tracking events, which lie scattered over the
-- table (a campaign's opens arrive interleaved). Neither column is indexed, so with room left on
-- each page the update is HOT: no entry in the table's three indexes per event.
ALTER TABLE tracking_events SET (fillfactor = 90);
