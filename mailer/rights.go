package mailer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"herald/consent"
	"herald/internal/db"
	"herald/internal/httpx"
)

// RightsPart is the mailer's consent.DataPart: the messages sent to a contact, and those sent to
// its address without naming a contact (transactional mail given "to", double opt-in
// confirmations). Erasure empties their recipient, subject, bodies, headers, status reason and
// the relay replies in their history (SMTP replies often quote the address), drops their
// idempotency key and request hash (either may be derived from the address) and their
// attachments, and stops those not yet sent (suppressed, reason erased); ids, stream, status,
// times and the history's steps stay.
type RightsPart struct{}

var _ consent.DataPart = RightsPart{}

// Name is "messages".
func (RightsPart) Name() string { return "messages" }

// messageExport is one message in the export document.
type messageExport struct {
	ID           string     `json:"id"`
	Stream       string     `json:"stream"`
	Purpose      string     `json:"purpose,omitempty"`
	To           string     `json:"to"`
	From         string     `json:"from"`
	Subject      string     `json:"subject"`
	Status       string     `json:"status"`
	StatusReason string     `json:"status_reason,omitempty"`
	MessageID    string     `json:"message_id"`
	CreatedAt    time.Time  `json:"created_at"`
	SentAt       *time.Time `json:"sent_at"`
	Attachments  []string   `json:"attachments,omitempty"`
}

// subjectMessages selects the ids of the subject's messages: by contact (messages_contact_idx),
// and by address for those with no contact (messages_to_address_idx, 011).
const subjectMessages = `
	SELECT id FROM messages WHERE contact_id = $2 AND workspace_id = $1
	UNION ALL
	SELECT id FROM messages WHERE workspace_id = $1 AND contact_id IS NULL AND lower(to_address) = lower($3) AND $3 <> ''`

// Export lists the subject's messages, oldest first.
func (RightsPart) Export(ctx context.Context, q db.Querier, s consent.Subject) (any, error) {
	rows, err := q.Query(ctx, `
		SELECT m.id::text, m.stream, m.purpose, m.to_address, m.from_address, m.subject, m.status, m.status_reason,
			m.message_id, m.created_at, m.sent_at,
			ARRAY(SELECT a.filename FROM message_attachments a WHERE a.message_id = m.id ORDER BY a.position)
		FROM messages m WHERE m.id IN (`+subjectMessages+`)
		ORDER BY m.created_at, m.id`, s.WorkspaceID, s.ContactID, s.Address)
	if err != nil {
		return nil, fmt.Errorf("export messages: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (messageExport, error) {
		var m messageExport
		err := r.Scan(&m.ID, &m.Stream, &m.Purpose, &m.To, &m.From, &m.Subject, &m.Status, &m.StatusReason,
			&m.MessageID, &m.CreatedAt, &m.SentAt, &m.Attachments)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("export messages: %w", err)
	}
	if out == nil {
		out = []messageExport{}
	}
	return out, nil
}

// Erase empties the personal fields of the subject's messages and deletes their attachments.
func (RightsPart) Erase(ctx context.Context, tx pgx.Tx, s consent.Subject) (int64, error) {
	tag, err := tx.Exec(ctx, `
		WITH target AS (`+subjectMessages+`),
		gone AS (DELETE FROM message_attachments WHERE message_id IN (SELECT id FROM target))
		UPDATE messages m SET to_address = '', to_name = '', subject = '', html_body = '', text_body = '',
			headers = '{}', idempotency_key = NULL, request_hash = NULL,
			status = CASE WHEN m.status IN ('queued', 'deferred') THEN 'suppressed' ELSE m.status END,
			status_reason = CASE WHEN m.status IN ('queued', 'deferred') THEN 'erased' ELSE '' END,
			history = (SELECT coalesce(jsonb_agg(h.e - 'detail' ORDER BY h.i), '[]'::jsonb)
				FROM jsonb_array_elements(m.history) WITH ORDINALITY AS h (e, i))
				|| CASE WHEN m.status IN ('queued', 'deferred')
					THEN jsonb_build_array(jsonb_build_object('status', 'suppressed', 'detail', 'erased', 'at', now()))
					ELSE '[]'::jsonb END
		FROM target WHERE m.id = target.id
			AND (m.to_address <> '' OR m.to_name <> '' OR m.html_body <> '' OR m.text_body <> '' OR m.subject <> '')`,
		s.WorkspaceID, s.ContactID, s.Address)
	if err != nil {
		return 0, fmt.Errorf("erase messages: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RightsMailer sends the emails of data-subject requests (consent.RightsMailer) through the
// transactional path: the message row, its attachments and its send job are written in the
// caller's transaction.
type RightsMailer struct {
	River           *river.Client[pgx.Tx]
	MaxAttempts     int
	MessageIDDomain string
}

var _ consent.RightsMailer = (*RightsMailer)(nil)

// SendRights stores e as a transactional message to e.ContactID under e.IdempotencyKey, with its
// attachments, and enqueues its send; it returns the message id. The same key again returns the
// first message and enqueues nothing.
func (rm *RightsMailer) SendRights(ctx context.Context, tx pgx.Tx, e consent.RightsEmail) (string, error) {
	if e.IdempotencyKey == "" || !idemKeyRE.MatchString(e.IdempotencyKey) {
		return "", fmt.Errorf("send rights email: bad idempotency key %q", e.IdempotencyKey)
	}
	_, from, err := parseAddress(e.From)
	if err != nil {
		return "", httpx.NewProblem(http.StatusConflict, "this workspace's confirmation sender is not a valid address")
	}
	_, to, err := parseAddress(e.To)
	if err != nil {
		return "", fmt.Errorf("send rights email: recipient: %w", err)
	}
	if strings.ContainsAny(e.ToName, "\r\n\x00") || strings.ContainsAny(e.Subject, "\r\n\x00") {
		return "", fmt.Errorf("send rights email: line break in the name or subject")
	}
	atts := make([]Attachment, len(e.Attachments))
	for i, a := range e.Attachments {
		atts[i] = Attachment{Filename: a.Filename, ContentType: a.ContentType, Data: a.Data}
		if err := atts[i].validate(); err != nil {
			return "", fmt.Errorf("send rights email: %w", err)
		}
	}
	var contactID *int64
	if e.ContactID != 0 {
		contactID = &e.ContactID
	}
	m := &Message{ID: newUUID(), WorkspaceID: e.WorkspaceID, Stream: StreamTransactional, ContactID: contactID, To: to,
		ToName: e.ToName, From: from, Subject: e.Subject, HTML: e.HTML, Text: e.Text}
	m.MessageID = m.ID + "@" + rm.MessageIDDomain
	hash := sha256.Sum256([]byte(e.IdempotencyKey + "\x00" + to + "\x00" + e.Subject))
	hit, err := MessageInsert(ctx, tx, m, e.IdempotencyKey, hash[:])
	if err != nil {
		return "", fmt.Errorf("send rights email: %w", err)
	}
	if hit != nil {
		return hit.ID, nil
	}
	if err := AttachmentsInsert(ctx, tx, m.ID, atts); err != nil {
		return "", fmt.Errorf("send rights email: %w", err)
	}
	args := SendArgs{MessageID: m.ID, Attachments: len(atts) > 0}
	if _, err := rm.River.InsertTx(ctx, tx, args, &river.InsertOpts{Queue: QueueTransactional, MaxAttempts: rm.MaxAttempts}); err != nil {
		return "", fmt.Errorf("send rights email: enqueue: %w", err)
	}
	return m.ID, nil
}
