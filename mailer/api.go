package mailer

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Handler serves the transactional messages API.
type Handler struct {
	DB              *pgxpool.Pool
	River           *river.Client[pgx.Tx]
	Logger          *slog.Logger
	Metrics         *Metrics
	MaxBodyBytes    int64
	MaxAttempts     int
	MessageIDDomain string
}

// Routes mounts the API on an authenticated /v1 router.
func (h *Handler) Routes(r chi.Router) {
	r.With(workspace.Require(h.Logger, workspace.ScopeMessagesSend)).Group(func(r chi.Router) {
		r.Post("/messages", httpx.Handler(h.Logger, h.send))
		r.Get("/messages/{id}", httpx.Handler(h.Logger, h.get))
	})
}

// sendRequest is the body of POST /v1/messages.
type sendRequest struct {
	Stream          string            `json:"stream,omitempty"`
	Purpose         string            `json:"purpose,omitempty"`
	To              string            `json:"to,omitempty"`
	Contact         string            `json:"contact,omitempty"`
	From            string            `json:"from"`
	ReplyTo         string            `json:"reply_to,omitempty"`
	Subject         string            `json:"subject,omitempty"`
	HTML            string            `json:"html,omitempty"`
	Text            string            `json:"text,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"`
	Template        string            `json:"template,omitempty"`
	TemplateVersion int               `json:"template_version,omitempty"`
	Data            map[string]any    `json:"data,omitempty"`
}

type sendResponse struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

var idemKeyRE = regexp.MustCompile(`^[\x21-\x7e]{1,255}$`)

func (h *Handler) send(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return httpx.BadRequest("the Idempotency-Key header is required (a unique string per message, e.g. a UUID)")
	}
	if !idemKeyRE.MatchString(key) {
		return httpx.BadRequest("Idempotency-Key must be 1-255 printable ASCII characters without spaces")
	}
	var req sendRequest
	if err := httpx.DecodeJSON(w, r, h.MaxBodyBytes, &req); err != nil {
		return err
	}
	canonical, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("hash request: %w", err)
	}
	hash := sha256.Sum256(canonical)

	var resp sendResponse
	replayed, stream := false, ""
	err = pgx.BeginFunc(r.Context(), h.DB, func(tx pgx.Tx) error {
		m, err := buildMessage(r.Context(), tx, p.WorkspaceID, &req)
		if err != nil {
			return err
		}
		m.ID = newUUID()
		m.MessageID = m.ID + "@" + h.MessageIDDomain
		hit, err := MessageInsert(r.Context(), tx, m, key, hash[:])
		if err != nil {
			return err
		}
		if hit != nil {
			if string(hit.RequestHash) != string(hash[:]) {
				return &httpx.Problem{Title: "Idempotency-Key reused", Status: http.StatusUnprocessableEntity,
					Detail: "this Idempotency-Key was already used with a different request body"}
			}
			resp, replayed = sendResponse{ID: hit.ID, Status: StatusQueued}, true
			return nil
		}
		if err := EnqueueSend(r.Context(), h.River, tx, m, h.MaxAttempts); err != nil {
			return err
		}
		resp, stream = sendResponse{ID: m.ID, Status: StatusQueued}, m.Stream
		return nil
	})
	if err != nil {
		return err
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	} else {
		h.Metrics.Accepted.WithLabelValues(stream).Inc()
	}
	w.Header().Set("Location", "/v1/messages/"+resp.ID)
	httpx.WriteJSON(w, http.StatusAccepted, resp)
	return nil
}

// EnqueueSend inserts the send job of the message m (just inserted in tx) in the same transaction,
// on the queue of its stream.
func EnqueueSend(ctx context.Context, rc *river.Client[pgx.Tx], tx pgx.Tx, m *Message, maxAttempts int) error {
	args, queue := SendArgs{MessageID: m.ID}, QueueTransactional
	if m.Stream == StreamMarketing {
		args.Marketing, queue = true, QueueMarketing
	}
	if _, err := rc.InsertTx(ctx, tx, args, &river.InsertOpts{Queue: queue, MaxAttempts: maxAttempts}); err != nil {
		return fmt.Errorf("enqueue send: %w", err)
	}
	return nil
}

// messageView is the body of GET /v1/messages/{id}.
type messageView struct {
	ID           string  `json:"id"`
	Status       string  `json:"status"`
	StatusReason string  `json:"status_reason,omitempty"`
	Stream       string  `json:"stream"`
	Purpose      string  `json:"purpose,omitempty"`
	To           string  `json:"to"`
	From         string  `json:"from"`
	Subject      string  `json:"subject"`
	MessageID    string  `json:"message_id"`
	CreatedAt    string  `json:"created_at"`
	SentAt       *string `json:"sent_at,omitempty"`
	History      []Event `json:"history"`
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	p := workspace.MustFromContext(r.Context())
	id := chi.URLParam(r, "id")
	if !uuidRE.MatchString(id) {
		return httpx.NotFound("no such message")
	}
	m, err := MessageGet(r.Context(), h.DB, p.WorkspaceID, id)
	if errors.Is(err, db.ErrNotFound) {
		return httpx.NotFound("no such message")
	}
	if err != nil {
		return err
	}
	v := messageView{ID: m.ID, Status: m.Status, StatusReason: m.StatusReason, Stream: m.Stream, Purpose: m.Purpose, To: m.To,
		From: m.From, Subject: m.Subject, MessageID: m.MessageID, CreatedAt: m.CreatedAt.UTC().Format(timeFormat), History: m.History}
	if m.SentAt != nil {
		s := m.SentAt.UTC().Format(timeFormat)
		v.SentAt = &s
	}
	httpx.WriteJSON(w, http.StatusOK, v)
	return nil
}

const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

// newUUID returns a version 7 UUID (RFC 9562): 48 bits of Unix milliseconds, then 74 random
// bits. Time order keeps primary-key inserts at the right edge of the index instead of scattered.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	ms := uint64(time.Now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	b[6] = b[6]&0x0f | 0x70
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
