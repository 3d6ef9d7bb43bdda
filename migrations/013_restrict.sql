-- Restriction of processing (consent/restrict.go): a restricted contact keeps its data but gets no
-- marketing and no tracking until the restriction is lifted. Transactional mail is not affected.
ALTER TABLE contacts ADD COLUMN restricted_at timestamptz;
