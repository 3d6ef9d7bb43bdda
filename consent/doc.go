// Package consent decides whether a message may be handed to SMTP, and owns the tables that
// decision reads: for now the suppression list (hard bounces, complaints, manual entries, erased
// addresses); the consent ledger, unsubscribe and preference centre extend it. Decide is called by
// the send worker immediately before the hand-off, inside the worker's transaction.
//
// It also keeps the record of people's privacy rights (privacy_requests.go): each request with its
// 30-day deadline, status and handler, every change audited; an objection to direct marketing
// (object.go) is carried out at once through the same withdrawal as unsubscribe-all. The audit log
// (audit.go, append-only) is read through GET /v1/audit (audit_api.go); its entries name ids and
// field names, never addresses, names or notes.
//
// Data-subject rights (rights.go, rights_api.go) are carried out over DataParts, one per package
// that stores personal data, each keeping its own SQL: the contact row and this package's ledger
// evidence, double opt-in requests and request notes (rights_part.go), and the RightsPart of
// mailer, campaigns and tracking, wired by cmd/herald (they import this package, so it cannot
// import them). Export assembles one JSON document (ExportSchema) from every part; Erase has each
// part remove its personal data in one transaction and leaves a keyed hash with reason erased on
// the suppression list. The preference centre's export request is confirmed by a signed,
// expiring link before the document is emailed as an attachment.
//
// Retention (retention*.go) runs each workspace's retention policy as a periodic River job
// (RetentionWorker): it decides which contacts opted out of all marketing and which workspaces
// are past their deletion grace period, and each package that holds the data (tracking,
// campaigns, mailer) removes it from its own tables through a small interface (OptOutPurger,
// AgedPurger, WorkspacePurger) wired in cmd/herald, so consent imports none of them.
//
// Purposes are of two kinds. Marketing purposes (MarketingPurposes) are what campaigns are sent
// for and what the preference centre lists as topics. The tracking purpose (TrackingPurpose,
// one per workspace, made by EnsureTrackingPurpose) governs the open pixel and tracked links
// under the workspace's tracking mode (TrackingAllowed); the preference centre shows it apart,
// campaigns refuse it, a complaint leaves it alone, and unsubscribing from all withdraws it.
package consent
