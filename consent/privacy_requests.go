package consent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"herald/internal/db"
)

// Kinds, statuses and channels of privacy requests.
const (
	RequestAccess   = "access"
	RequestExport   = "export"
	RequestErase    = "erase"
	RequestRectify  = "rectify"
	RequestRestrict = "restrict"
	RequestObject   = "object"

	StatusReceived   = "received"
	StatusInProgress = "in_progress"
	StatusCompleted  = "completed"
	StatusRejected   = "rejected"

	RequestChannelAPI              = "api"
	RequestChannelPreferenceCentre = "preference_centre"
	RequestChannelEmail            = "email"
)

// RequestKinds, RequestStatuses and RequestChannels list the accepted values.
var (
	RequestKinds    = []string{RequestAccess, RequestExport, RequestErase, RequestRectify, RequestRestrict, RequestObject}
	RequestStatuses = []string{StatusReceived, StatusInProgress, StatusCompleted, StatusRejected}
	RequestChannels = []string{RequestChannelAPI, RequestChannelPreferenceCentre, RequestChannelEmail}
)

// RequestDeadline is how long after its reception a request must be answered.
const RequestDeadline = 30 * 24 * time.Hour

// maxNoteLen is the longest note a request keeps (characters), as the table's CHECK says.
const maxNoteLen = 2000

// maxBackdate is how far in the past a request's received_at may lie: a request that arrived by
// post or email is recorded when staff get to it, but its deadline runs from its reception.
const maxBackdate = 365 * 24 * time.Hour

// ErrRequestFinal is wrapped by UpdatePrivacyRequest's error when the request is already
// completed or rejected: those statuses are final.
var ErrRequestFinal = errors.New("privacy request is already closed")

// PrivacyRequest is one request a person made under their privacy rights.
type PrivacyRequest struct {
	ID          int64
	WorkspaceID int64
	// ContactID is the contact the request is about; nil when Herald holds none (or no longer).
	ContactID   *int64
	Kind        string
	Status      string
	Channel     string
	ReceivedAt  time.Time
	DueAt       time.Time
	CompletedAt *time.Time
	// HandledBy is the actor of the last change (the recorder at first).
	HandledBy string
	Note      string
	UpdatedAt time.Time
	// ContactExternalID is the contact's CRM id, read with the request (empty without a contact).
	ContactExternalID string
}

// Open reports whether the request still awaits an answer.
func (r PrivacyRequest) Open() bool {
	return r.Status == StatusReceived || r.Status == StatusInProgress
}

// Overdue reports whether the request is open past its due date at now.
func (r PrivacyRequest) Overdue(now time.Time) bool { return r.Open() && r.DueAt.Before(now) }

// final reports whether status admits no further change.
func final(status string) bool { return status == StatusCompleted || status == StatusRejected }

// validate checks a request to record (times already set); the error is client-safe.
func (r *PrivacyRequest) validate(now time.Time) error {
	switch {
	case r.WorkspaceID == 0:
		return errors.New("record privacy request: no workspace")
	case !slices.Contains(RequestKinds, r.Kind):
		return fieldErr("kind", "must be one of "+strings.Join(RequestKinds, ", "))
	case !slices.Contains(RequestChannels, r.Channel):
		return fieldErr("channel", "must be one of "+strings.Join(RequestChannels, ", "))
	case r.Status != StatusReceived && r.Status != StatusInProgress && r.Status != StatusCompleted:
		return fieldErr("status", "a new request is received, in_progress or completed")
	case !printable(r.HandledBy, 200) || r.HandledBy == "":
		return fieldErr("actor", "must be 1-200 printable characters")
	case !validNote(r.Note):
		return fieldErr("note", fmt.Sprintf("must be at most %d characters, without control characters other than line breaks", maxNoteLen))
	case r.ReceivedAt.After(now.Add(maxClockSkew)):
		return fieldErr("received_at", "lies in the future")
	case r.ReceivedAt.Before(now.Add(-maxBackdate)):
		return fieldErr("received_at", "lies more than a year in the past")
	}
	return nil
}

// validNote accepts text of at most maxNoteLen characters: a note may span lines, but holds no
// other control characters.
func validNote(s string) bool {
	return printable(strings.NewReplacer("\r\n", " ", "\n", " ").Replace(s), 4*maxNoteLen) &&
		len([]rune(s)) <= maxNoteLen
}

const privacyRequestColumns = `r.id, r.workspace_id, r.contact_id, r.kind, r.status, r.channel, r.received_at, r.due_at,
	r.completed_at, r.handled_by, r.note, r.updated_at, coalesce(c.external_id, '')`

const privacyRequestFrom = ` FROM privacy_requests r LEFT JOIN contacts c ON c.workspace_id = r.workspace_id AND c.id = r.contact_id `

func scanPrivacyRequest(row pgx.Row) (PrivacyRequest, error) {
	var r PrivacyRequest
	err := row.Scan(&r.ID, &r.WorkspaceID, &r.ContactID, &r.Kind, &r.Status, &r.Channel, &r.ReceivedAt, &r.DueAt,
		&r.CompletedAt, &r.HandledBy, &r.Note, &r.UpdatedAt, &r.ContactExternalID)
	return r, err
}

// RecordPrivacyRequest records a request in tx and audits it (privacy_request.record), on behalf
// of actor. r names the workspace, kind, channel, optional contact and note; a zero ReceivedAt
// means now, and the due date is always ReceivedAt + RequestDeadline. Status is received unless
// given as in_progress or completed (a request Herald carries out at once, such as an
// objection); a completed one is completed now by actor. Invalid fields are *FieldError.
func (s *Service) RecordPrivacyRequest(ctx context.Context, tx pgx.Tx, r PrivacyRequest, actor string) (PrivacyRequest, error) {
	now := s.now().UTC().Truncate(time.Microsecond)
	if r.ReceivedAt.IsZero() {
		r.ReceivedAt = now
	}
	r.ReceivedAt = r.ReceivedAt.UTC().Truncate(time.Microsecond)
	r.Status = cmpOr(r.Status, StatusReceived)
	r.HandledBy = actor
	if err := r.validate(now); err != nil {
		return PrivacyRequest{}, err
	}
	r.DueAt = r.ReceivedAt.Add(RequestDeadline)
	r.CompletedAt = nil
	if r.Status == StatusCompleted {
		r.CompletedAt = &now
	}
	err := tx.QueryRow(ctx, `
		INSERT INTO privacy_requests (workspace_id, contact_id, kind, status, channel, received_at, due_at,
			completed_at, handled_by, note, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		RETURNING id`, r.WorkspaceID, r.ContactID, r.Kind, r.Status, r.Channel, r.ReceivedAt, r.DueAt,
		r.CompletedAt, r.HandledBy, r.Note, now).Scan(&r.ID)
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "23503" { // foreign_key_violation
		return PrivacyRequest{}, fieldErr("contact", "no such contact")
	}
	if err != nil {
		return PrivacyRequest{}, fmt.Errorf("record privacy request: %w", err)
	}
	r.UpdatedAt = now
	detail := map[string]any{"kind": r.Kind, "status": r.Status, "channel": r.Channel, "due_at": r.DueAt}
	if r.ContactID != nil {
		detail["contact_id"] = *r.ContactID
	}
	if err := AuditWrite(ctx, tx, Audit{WorkspaceID: r.WorkspaceID, Actor: actor, Action: "privacy_request.record",
		Target: requestTarget(r.ID), Detail: detail}); err != nil {
		return PrivacyRequest{}, fmt.Errorf("record privacy request: %w", err)
	}
	return r, nil
}

func requestTarget(id int64) string { return "privacy_request:" + strconv.FormatInt(id, 10) }

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// PrivacyRequestGet returns the workspace's request id, or an error wrapping db.ErrNotFound (a
// request of another workspace is never found).
func PrivacyRequestGet(ctx context.Context, q db.Querier, workspaceID, id int64) (PrivacyRequest, error) {
	return privacyRequestGet(ctx, q, workspaceID, id, "")
}

func privacyRequestGet(ctx context.Context, q db.Querier, workspaceID, id int64, lock string) (PrivacyRequest, error) {
	r, err := scanPrivacyRequest(q.QueryRow(ctx, `SELECT `+privacyRequestColumns+privacyRequestFrom+
		`WHERE r.workspace_id = $1 AND r.id = $2 `+lock, workspaceID, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("get privacy request: %w", db.ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("get privacy request: %w", err)
	}
	return r, nil
}

// RequestUpdate is a change to a request: a new status, a new note, or both (nil: unchanged).
type RequestUpdate struct {
	Status *string
	Note   *string
}

// UpdatePrivacyRequest applies u to the workspace's request id in tx, on behalf of actor, and
// audits the change (privacy_request.update, with the statuses but never the note's text). The
// transitions allowed: received to in_progress, completed or rejected; in_progress to completed
// or rejected; a request that is completed or rejected is final (an error wrapping
// ErrRequestFinal), and a rejection must come with a note giving the reason. An update that changes nothing
// records nothing and reports changed false. Errors: db.ErrNotFound, *FieldError.
func (s *Service) UpdatePrivacyRequest(ctx context.Context, tx pgx.Tx, workspaceID, id int64, u RequestUpdate, actor string) (r PrivacyRequest, changed bool, err error) {
	if u.Status != nil && !slices.Contains(RequestStatuses, *u.Status) {
		return r, false, fieldErr("status", "must be one of "+strings.Join(RequestStatuses, ", "))
	}
	if u.Note != nil && !validNote(*u.Note) {
		return r, false, fieldErr("note", fmt.Sprintf("must be at most %d characters, without control characters other than line breaks", maxNoteLen))
	}
	if !printable(actor, 200) || actor == "" {
		return r, false, fieldErr("actor", "must be 1-200 printable characters")
	}
	r, err = privacyRequestGet(ctx, tx, workspaceID, id, "FOR UPDATE OF r")
	if err != nil {
		return r, false, fmt.Errorf("update privacy request: %w", err)
	}
	from := r.Status
	to := from
	if u.Status != nil {
		to = *u.Status
	}
	note := r.Note
	if u.Note != nil {
		note = *u.Note
	}
	noteChanged := note != r.Note
	if to == from && !noteChanged {
		return r, false, nil
	}
	switch {
	case final(from):
		return r, false, fmt.Errorf("update privacy request %d (%s): %w", id, from, ErrRequestFinal)
	case to == StatusReceived && from != StatusReceived:
		return r, false, fieldErr("status", "a request in progress cannot go back to received")
	case to == StatusRejected && (u.Note == nil || strings.TrimSpace(*u.Note) == ""):
		return r, false, fieldErr("note", "rejecting a request needs a note giving the reason, in the same update")
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	r.Status, r.Note, r.HandledBy, r.UpdatedAt = to, note, actor, now
	if final(to) {
		r.CompletedAt = &now
	}
	if _, err := tx.Exec(ctx, `UPDATE privacy_requests SET status = $3, note = $4, handled_by = $5, updated_at = $6,
		completed_at = $7 WHERE workspace_id = $1 AND id = $2`,
		workspaceID, id, r.Status, r.Note, r.HandledBy, r.UpdatedAt, r.CompletedAt); err != nil {
		return r, false, fmt.Errorf("update privacy request: %w", err)
	}
	detail := map[string]any{"kind": r.Kind, "from": from, "to": to, "note_changed": noteChanged}
	if err := AuditWrite(ctx, tx, Audit{WorkspaceID: workspaceID, Actor: actor, Action: "privacy_request.update",
		Target: requestTarget(id), Detail: detail}); err != nil {
		return r, false, fmt.Errorf("update privacy request: %w", err)
	}
	return r, true, nil
}

// CompletePrivacyRequest marks the workspace's request id completed in tx on behalf of actor,
// for the code that carries requests out (export, erasure). Completing a completed request again
// changes nothing; a rejected one wraps ErrRequestFinal.
func (s *Service) CompletePrivacyRequest(ctx context.Context, tx pgx.Tx, workspaceID, id int64, actor string) (PrivacyRequest, error) {
	st := StatusCompleted
	r, _, err := s.UpdatePrivacyRequest(ctx, tx, workspaceID, id, RequestUpdate{Status: &st}, actor)
	return r, err
}

// overdueCollector reports herald_privacy_requests_overdue, counted at scrape time.
type overdueCollector struct {
	db     db.Querier
	logger *slog.Logger
	now    func() time.Time
	desc   *prometheus.Desc
}

// NewOverdueCollector returns a collector of herald_privacy_requests_overdue: the open privacy
// requests of every workspace whose due date has passed, read from the database at each scrape
// (on the partial index of open requests by due date). now is the clock (time.Now when nil).
func NewOverdueCollector(q db.Querier, logger *slog.Logger, now func() time.Time) prometheus.Collector {
	if now == nil {
		now = time.Now
	}
	return &overdueCollector{db: q, logger: logger, now: now, desc: prometheus.NewDesc("herald_privacy_requests_overdue",
		"Privacy requests still open (received or in progress) after their due date, in all workspaces.", nil, nil)}
}

func (c *overdueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *overdueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	err := c.db.QueryRow(ctx, `SELECT count(*) FROM privacy_requests
		WHERE status IN ('received', 'in_progress') AND due_at < $1`, c.now()).Scan(&n)
	if err != nil {
		// As the queue depth collector: the scrape goes on without this series.
		if c.logger != nil {
			c.logger.Warn("privacy requests overdue metric", "err", err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
