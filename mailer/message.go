package mailer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/db"
)

// Streams a message belongs to.
const (
	StreamTransactional = "transactional"
	StreamMarketing     = "marketing"
)

// Message statuses, in the order a message usually passes through them.
const (
	StatusQueued     = "queued"
	StatusSending    = "sending"
	StatusSent       = "sent"
	StatusDeferred   = "deferred"
	StatusFailed     = "failed"
	StatusSuppressed = "suppressed"
)

// Message is one email as stored.
type Message struct {
	ID          string
	Seq         int64 // messages.seq: the number its VERP bounce address names
	WorkspaceID int64
	Stream      string
	Purpose     string // the consent purpose of a marketing message
	ContactID   *int64
	To          string
	ToName      string
	From        string
	FromName    string
	ReplyTo     string
	Subject     string
	HTML        string
	Text        string
	Headers     map[string]string
	Attachments []Attachment // read only for a job with SendArgs.Attachments; compose attaches them
	MessageID   string
	// ReturnPath, if set, is the envelope sender (SMTP MAIL FROM, the Return-Path the receiving
	// system records) instead of From: a VERP address that names this message, so that a bounce
	// tells which message and recipient it is about.
	ReturnPath   string
	Status       string
	StatusReason string
	History      []Event
	CreatedAt    time.Time
	SentAt       *time.Time
}

// Event is one entry of a message's history.
type Event struct {
	Status       string    `json:"status"`
	Attempt      int       `json:"attempt,omitempty"`
	SMTPCode     *int      `json:"smtp_code,omitempty"`
	EnhancedCode string    `json:"enhanced_code,omitempty"`
	Detail       string    `json:"detail,omitempty"`
	At           time.Time `json:"at"`
}

const messageColumns = `id::text, seq, workspace_id, stream, purpose, contact_id, to_address, to_name, from_address, from_name,
	reply_to, subject, html_body, text_body, headers, message_id, status, status_reason, history, created_at, sent_at`

func scanMessage(row pgx.Row) (Message, error) {
	var m Message
	var headers, history []byte
	err := row.Scan(&m.ID, &m.Seq, &m.WorkspaceID, &m.Stream, &m.Purpose, &m.ContactID, &m.To, &m.ToName, &m.From, &m.FromName,
		&m.ReplyTo, &m.Subject, &m.HTML, &m.Text, &headers, &m.MessageID, &m.Status, &m.StatusReason,
		&history, &m.CreatedAt, &m.SentAt)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(headers, &m.Headers); err != nil {
		return m, fmt.Errorf("decode headers: %w", err)
	}
	if err := json.Unmarshal(history, &m.History); err != nil {
		return m, fmt.Errorf("decode history: %w", err)
	}
	return m, nil
}

// MessageInsert stores a new queued message. When idemKey is set and the workspace already has a
// message under that key, nothing is written and existing reports the earlier message's id and
// request hash.
func MessageInsert(ctx context.Context, tx pgx.Tx, m *Message, idemKey string, reqHash []byte) (existing *IdempotentHit, err error) {
	headers, err := json.Marshal(m.Headers)
	if err != nil {
		return nil, fmt.Errorf("insert message: %w", err)
	}
	var created time.Time
	err = tx.QueryRow(ctx, `
		INSERT INTO messages (id, workspace_id, stream, contact_id, to_address, to_name, from_address, from_name,
			reply_to, subject, html_body, text_body, headers, message_id, status, history, idempotency_key, request_hash, purpose)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued',
			jsonb_build_array(jsonb_build_object('status', 'queued', 'at', now())), NULLIF($15, ''), $16, $17)
		ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
		RETURNING created_at`,
		m.ID, m.WorkspaceID, m.Stream, m.ContactID, m.To, m.ToName, m.From, m.FromName, m.ReplyTo, m.Subject,
		m.HTML, m.Text, headers, m.MessageID, idemKey, reqHash, m.Purpose).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		hit := &IdempotentHit{}
		err := tx.QueryRow(ctx, `SELECT id::text, request_hash FROM messages WHERE workspace_id = $1 AND idempotency_key = $2`,
			m.WorkspaceID, idemKey).Scan(&hit.ID, &hit.RequestHash)
		if err != nil {
			return nil, fmt.Errorf("insert message: read idempotent original: %w", err)
		}
		return hit, nil
	}
	if err != nil {
		return nil, fmt.Errorf("insert message: %w", err)
	}
	m.Status, m.CreatedAt = StatusQueued, created
	return nil, nil
}

// IdempotentHit is the message an earlier request stored under the same Idempotency-Key.
type IdempotentHit struct {
	ID          string
	RequestHash []byte
}

// MessageGet returns the workspace's message with the given id.
func MessageGet(ctx context.Context, q db.Querier, workspaceID int64, id string) (Message, error) {
	m, err := scanMessage(q.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages WHERE workspace_id = $1 AND id = $2`, workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, fmt.Errorf("get message: %w", db.ErrNotFound)
	}
	if err != nil {
		return m, fmt.Errorf("get message: %w", err)
	}
	return m, nil
}

// setStatusSQL changes a message's status and appends the change to its history, in one
// statement, unless the message's status is one of $7. It returns the message.
const setStatusSQL = `
	UPDATE messages SET status = $2, status_reason = CASE WHEN $2 = 'sent' THEN '' ELSE $3 END, updated_at = now(),
		sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
		history = history || jsonb_strip_nulls(jsonb_build_object('status', $2::text, 'attempt', $4::int,
			'smtp_code', $5::int, 'enhanced_code', NULLIF($6::text, ''), 'detail', NULLIF($3::text, ''), 'at', now()))
	WHERE id = $1 AND NOT (status = ANY ($7::text[]))
	RETURNING ` + messageColumns

// MessageSetStatus changes a message's status and appends the change to its history.
func MessageSetStatus(ctx context.Context, q db.Querier, m *Message, ev Event) error {
	updated, err := scanMessage(q.QueryRow(ctx, setStatusSQL, m.ID, ev.Status, ev.Detail, ev.Attempt, ev.SMTPCode, ev.EnhancedCode, []string{}))
	if err != nil {
		return fmt.Errorf("set message status: %w", err)
	}
	*m = updated
	return nil
}

// messageMarkSending moves a message to "sending" and returns it, unless it is gone or has
// reached a final status (then ok is false, and it must not be sent).
func messageMarkSending(ctx context.Context, q db.Querier, id string, attempt int) (m Message, ok bool, err error) {
	m, err = scanMessage(q.QueryRow(ctx, setStatusSQL, id, StatusSending, "", attempt, nil, "",
		[]string{StatusSent, StatusFailed, StatusSuppressed}))
	if errors.Is(err, pgx.ErrNoRows) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("mark message sending: %w", err)
	}
	return m, true, nil
}
