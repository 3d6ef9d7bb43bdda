package mailer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/httpx"
)

// ConfirmationMailer sends double opt-in confirmation emails (consent.Mailer) through the
// transactional path: the message row and its send job are written in the caller's transaction,
// so a subscribe request and its email commit, or roll back, together.
type ConfirmationMailer struct {
	River           *river.Client[pgx.Tx]
	MaxAttempts     int
	MessageIDDomain string
}

var _ consent.Mailer = (*ConfirmationMailer)(nil)

// SendConfirmation stores c as a transactional message under the idempotency key
// "subscribe:REQUEST_ID" and enqueues its send; it returns the message id. The same request
// again returns the first message and enqueues nothing.
func (cm *ConfirmationMailer) SendConfirmation(ctx context.Context, tx pgx.Tx, c consent.Confirmation) (string, error) {
	if c.RequestID == "" {
		return "", fmt.Errorf("send confirmation: no request id")
	}
	_, from, err := parseAddress(c.From)
	if err != nil {
		// The sender comes from the workspace's settings, not from the person subscribing.
		return "", httpx.NewProblem(http.StatusConflict, "this workspace's confirmation sender is not a valid address")
	}
	_, to, err := parseAddress(c.To)
	if err != nil {
		return "", httpx.Invalid("email", err.Error())
	}
	if strings.ContainsAny(c.ToName, "\r\n\x00") || strings.ContainsAny(c.Subject, "\r\n\x00") {
		return "", fmt.Errorf("send confirmation: line break in the name or subject")
	}
	m := &Message{ID: newUUID(), WorkspaceID: c.WorkspaceID, Stream: StreamTransactional, To: to, ToName: c.ToName,
		From: from, Subject: c.Subject, HTML: c.HTML, Text: c.Text}
	m.MessageID = m.ID + "@" + cm.MessageIDDomain
	hash := sha256.Sum256([]byte(c.RequestID + "\x00" + to + "\x00" + c.Subject + "\x00" + c.Text))
	hit, err := MessageInsert(ctx, tx, m, "subscribe:"+c.RequestID, hash[:])
	if err != nil {
		return "", fmt.Errorf("send confirmation: %w", err)
	}
	if hit != nil {
		return hit.ID, nil
	}
	if err := EnqueueSend(ctx, cm.River, tx, m, cm.MaxAttempts); err != nil {
		return "", fmt.Errorf("send confirmation: %w", err)
	}
	return m.ID, nil
}
