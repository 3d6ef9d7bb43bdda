-- Campaign sending updates every recipient row twice (claim, outcome). An update can be HOT (a
-- new row version on the same page, no index entry written) only when it changes no indexed
-- column, and a column in a partial index's predicate counts: campaign_recipients_open_idx, on
-- status, made both updates write entries into every index. Its replacement indexes nothing that
-- the send worker changes, and a fillfactor of 50 leaves room on each page for the new versions
-- of a whole claim (one statement updates the rows of a page at once). Queries for a campaign's
-- open recipients walk this index from a point below which every recipient is known to be final
-- (see campaigns.StateCache), or page through it by id.
ALTER TABLE campaign_recipients SET (fillfactor = 50);
CREATE INDEX campaign_recipients_campaign_idx ON campaign_recipients (campaign_id, id);
DROP INDEX campaign_recipients_open_idx;
