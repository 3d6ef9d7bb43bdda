-- The double opt-in form caps confirmation emails per address and day (consent/subscribe.go); the
-- count reads this index instead of scanning every request of the workspace.
CREATE INDEX subscribe_requests_address_idx ON subscribe_requests (workspace_id, address, created_at);
