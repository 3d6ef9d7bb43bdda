// Package consent decides whether a message may be handed to SMTP, and owns the tables that
// decision reads: for now the suppression list (hard bounces, complaints, manual entries, erased
// addresses); the consent ledger, unsubscribe and preference centre extend it. Decide is called by
// the send worker immediately before the hand-off, inside the worker's transaction.
package consent
