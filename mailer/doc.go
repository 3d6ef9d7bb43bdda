// Package mailer owns messages: the transactional API (POST/GET /v1/messages), the messages table
// their history, the River send worker and the pooled SMTP relay connections it hands mail
// to. A message row and its send job are inserted in one transaction; the worker asks
// consent.Decide immediately before the SMTP hand-off and records every outcome (sent, deferred,
// failed, suppressed) with the relay's reply. The Message-ID is fixed when the row is inserted, so
// a retried delivery carries the same one.
package mailer
