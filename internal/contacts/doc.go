// Package contacts owns the contacts a CRM backend pushes to Herald: one row per person per
// workspace, keyed by the CRM's own external id. It validates and normalises every field before
// storing it (addresses by NormalizeAddress, names free of line breaks so they are safe in mail
// headers, BCP 47 locales, IANA time zones, bounded JSON attributes), and serves the HTTP API:
// PUT and GET of one contact and a streamed bulk import of CSV or NDJSON.
//
// An import is applied in one transaction: rows are parsed and validated while COPY streams them
// into a temporary staging table, then one INSERT … SELECT … ON CONFLICT upserts them, so an
// upload either applies all its valid rows or nothing, and memory use does not grow with its size.
//
// A change made through the API is recorded (rectify.go): a PUT that changes a contact writes a
// contact.rectify audit entry naming the changed fields (never their values) and the API key, in
// the transaction of the change; an import writes one contacts.import entry with its counts.
package contacts
