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
	ID           string
	WorkspaceID  int64
	Stream       string
	ContactID    *int64
	To           string
	ToName       string
	From         string
	FromName     string
	ReplyTo      string
	Subject      string
	HTML         string
	Text         string
	Headers      map[string]string
	MessageID    string
	Status       string
	StatusReason string
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

const messageColumns = `id::text, workspace_id, stream, contact_id, to_address, to_name, from_address, from_name,
	reply_to, subject, html_body, text_body, headers, message_id, status, status_reason, created_at, sent_at`

func scanMessage(row pgx.Row) (Message, error) {
	var m Message
	var headers []byte
	err := row.Scan(&m.ID, &m.WorkspaceID, &m.Stream, &m.ContactID, &m.To, &m.ToName, &m.From, &m.FromName,
		&m.ReplyTo, &m.Subject, &m.HTML, &m.Text, &headers, &m.MessageID, &m.Status, &m.StatusReason,
		&m.CreatedAt, &m.SentAt)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(headers, &m.Headers); err != nil {
		return m, fmt.Errorf("decode headers: %w", err)
	}
	return m, nil
}

// MessageInsert stores a new queued message with its first history event. When idemKey is set
// and the workspace already has a message under that key, nothing is written and existing reports
// the earlier message's id and request hash.
func MessageInsert(ctx context.Context, tx pgx.Tx, m *Message, idemKey string, reqHash []byte) (existing *IdempotentHit, err error) {
	headers, err := json.Marshal(m.Headers)
	if err != nil {
		return nil, fmt.Errorf("insert message: %w", err)
	}
	var created time.Time
	err = tx.QueryRow(ctx, `
		INSERT INTO messages (id, workspace_id, stream, contact_id, to_address, to_name, from_address, from_name,
			reply_to, subject, html_body, text_body, headers, message_id, status, idempotency_key, request_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'queued', NULLIF($15, ''), $16)
		ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
		RETURNING created_at`,
		m.ID, m.WorkspaceID, m.Stream, m.ContactID, m.To, m.ToName, m.From, m.FromName, m.ReplyTo, m.Subject,
		m.HTML, m.Text, headers, m.MessageID, idemKey, reqHash).Scan(&created)
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
	if err := EventInsert(ctx, tx, m.ID, m.WorkspaceID, Event{Status: StatusQueued}); err != nil {
		return nil, err
	}
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

// messageLockForSend reads a message and locks its row for the rest of the transaction, so two
// deliveries of the same message can never overlap.
func messageLockForSend(ctx context.Context, tx pgx.Tx, id string) (Message, error) {
	m, err := scanMessage(tx.QueryRow(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = $1 FOR UPDATE`, id))
	if err != nil {
		return m, fmt.Errorf("lock message: %w", err)
	}
	return m, nil
}

// MessageSetStatus changes a message's status and appends the matching history event.
func MessageSetStatus(ctx context.Context, tx pgx.Tx, m *Message, ev Event) error {
	_, err := tx.Exec(ctx, `
		UPDATE messages SET status = $2, status_reason = $3, updated_at = now(),
			sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
		WHERE id = $1`, m.ID, ev.Status, ev.Detail)
	if err != nil {
		return fmt.Errorf("set message status: %w", err)
	}
	m.Status, m.StatusReason = ev.Status, ev.Detail
	return EventInsert(ctx, tx, m.ID, m.WorkspaceID, ev)
}

// EventInsert appends one history event.
func EventInsert(ctx context.Context, q db.Querier, messageID string, workspaceID int64, ev Event) error {
	_, err := q.Exec(ctx, `
		INSERT INTO message_events (message_id, workspace_id, status, attempt, smtp_code, enhanced_code, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		messageID, workspaceID, ev.Status, ev.Attempt, ev.SMTPCode, ev.EnhancedCode, ev.Detail)
	if err != nil {
		return fmt.Errorf("insert message event: %w", err)
	}
	return nil
}

// EventList returns a message's history, oldest first.
func EventList(ctx context.Context, q db.Querier, workspaceID int64, messageID string) ([]Event, error) {
	rows, err := q.Query(ctx, `
		SELECT status, attempt, smtp_code, enhanced_code, detail, occurred_at
		FROM message_events WHERE workspace_id = $1 AND message_id = $2 ORDER BY id`, workspaceID, messageID)
	if err != nil {
		return nil, fmt.Errorf("list message events: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		var e Event
		err := r.Scan(&e.Status, &e.Attempt, &e.SMTPCode, &e.EnhancedCode, &e.Detail, &e.At)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list message events: %w", err)
	}
	return evs, nil
}
