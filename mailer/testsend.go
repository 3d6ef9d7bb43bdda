package mailer

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/internal/httpx"
	"herald/templates"
)

// TestHeader marks a template test send, so that a reader (or a filter) can tell it from real mail.
const TestHeader = "X-Herald-Test"

// TemplateTestSender sends template test sends (templates.TestSender) through the transactional
// path: the message row and its send job are written in one transaction, and the send worker's
// transactional decision still refuses a suppressed address.
type TemplateTestSender struct {
	DB              *pgxpool.Pool
	River           *river.Client[pgx.Tx]
	MaxAttempts     int
	MessageIDDomain string
}

var _ templates.TestSender = (*TemplateTestSender)(nil)

// SendTest stores m as a queued transactional message with the header X-Herald-Test: 1 and
// enqueues its send; it returns the message id (GET /v1/messages/{id}). Every test is a new
// message: there is no idempotency key. Invalid addresses or subject are 422 problems.
func (s *TemplateTestSender) SendTest(ctx context.Context, tm templates.TestMessage) (string, error) {
	_, to, err := parseAddress(tm.To)
	if err != nil {
		return "", httpx.Invalid("to", err.Error())
	}
	fromName, from, err := parseAddress(tm.From)
	if err != nil {
		return "", httpx.Invalid("from", err.Error())
	}
	switch {
	case strings.ContainsAny(tm.Subject, "\r\n\x00"):
		return "", httpx.Invalid("subject", "must not contain line breaks or NUL")
	case len(tm.Subject) > maxSubjectLen:
		return "", httpx.Invalid("subject", fmt.Sprintf("longer than %d bytes", maxSubjectLen))
	case tm.HTML == "" && tm.Text == "":
		return "", httpx.Invalid("html", "a body is required: html, text or both")
	}
	m := &Message{ID: newUUID(), WorkspaceID: tm.WorkspaceID, Stream: StreamTransactional, To: to, From: from,
		FromName: fromName, Subject: tm.Subject, HTML: tm.HTML, Text: tm.Text, Headers: map[string]string{TestHeader: "1"}}
	m.MessageID = m.ID + "@" + s.MessageIDDomain
	err = pgx.BeginFunc(ctx, s.DB, func(tx pgx.Tx) error {
		if _, err := MessageInsert(ctx, tx, m, "", nil); err != nil {
			return err
		}
		return EnqueueSend(ctx, s.River, tx, m, s.MaxAttempts)
	})
	if err != nil {
		return "", fmt.Errorf("send test: %w", err)
	}
	return m.ID, nil
}
