package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Objection is the outcome of ObjectToMarketing.
type Objection struct {
	// Request is the completed privacy request of kind object that records the objection.
	Request PrivacyRequest
	// Withdrawn counts the grants the objection withdrew.
	Withdrawn int
	// Created is false when the objection had been recorded before and nothing changed since:
	// Request is then the earlier one.
	Created bool
}

// ObjectToMarketing records a contact's objection to direct marketing in tx, on behalf of actor:
// every purpose the contact has granted is withdrawn (ledger events with source objection), the
// address goes on the suppression list (unsubscribed_all), a privacy request of kind object is
// recorded as completed at once, and the audit log says what was done. It is idempotent: when
// nothing is left to withdraw or suppress and an objection is already on record, it returns that
// one with Created false and writes nothing. channel and note describe the request (see
// RecordPrivacyRequest). Errors: ErrContactGone for an erased contact, *FieldError.
func (s *Service) ObjectToMarketing(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, channel, note, actor string) (Objection, error) {
	// Locks the contact row first, which serialises two objections of one contact.
	addr, err := contactAddress(ctx, tx, workspaceID, contactID, true)
	if err != nil {
		return Objection{}, fmt.Errorf("object: %w", err)
	}
	// The consent lock keeps the count true until unsubscribeAll withdraws what it counted.
	if err := s.LockContacts(ctx, tx, workspaceID, contactID); err != nil {
		return Objection{}, fmt.Errorf("object: %w", err)
	}
	before, err := s.grantedCount(ctx, tx, workspaceID, contactID)
	if err != nil {
		return Objection{}, err
	}
	changed, err := s.unsubscribeAll(ctx, tx, workspaceID, contactID, addr, SourceObjection, actor,
		map[string]string{"scope": "all", "request": RequestObject}, Evidence{Address: addr})
	if err != nil {
		return Objection{}, fmt.Errorf("object: %w", err)
	}
	if !changed {
		prev, err := s.lastObjection(ctx, tx, workspaceID, contactID)
		if err == nil {
			return Objection{Request: prev}, nil
		}
		if !errors.Is(err, db.ErrNotFound) {
			return Objection{}, err
		}
	}
	req, err := s.RecordPrivacyRequest(ctx, tx, PrivacyRequest{WorkspaceID: workspaceID, ContactID: &contactID,
		Kind: RequestObject, Status: StatusCompleted, Channel: channel, Note: note}, actor)
	if err != nil {
		return Objection{}, err
	}
	err = AuditWrite(ctx, tx, Audit{WorkspaceID: workspaceID, Actor: actor, Action: "contact.object",
		Target: "contact:" + strconv.FormatInt(contactID, 10),
		Detail: map[string]any{"privacy_request_id": req.ID, "withdrawn": before}})
	if err != nil {
		return Objection{}, fmt.Errorf("object: %w", err)
	}
	return Objection{Request: req, Withdrawn: before, Created: true}, nil
}

// grantedCount counts the contact's purposes in state granted (expired grants included: the
// objection withdraws them too).
func (s *Service) grantedCount(ctx context.Context, q db.Querier, workspaceID, contactID int64) (int, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 AND status = 'granted'`,
		workspaceID, contactID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("object: count grants: %w", err)
	}
	return n, nil
}

// lastObjection returns the contact's latest completed objection, or db.ErrNotFound.
func (s *Service) lastObjection(ctx context.Context, q db.Querier, workspaceID, contactID int64) (PrivacyRequest, error) {
	r, err := scanPrivacyRequest(q.QueryRow(ctx, `SELECT `+privacyRequestColumns+privacyRequestFrom+`
		WHERE r.workspace_id = $1 AND r.contact_id = $2 AND r.kind = 'object' AND r.status = 'completed'
		ORDER BY r.id DESC LIMIT 1`, workspaceID, contactID))
	if errors.Is(err, pgx.ErrNoRows) {
		return r, db.ErrNotFound
	}
	if err != nil {
		return r, fmt.Errorf("object: earlier objection: %w", err)
	}
	return r, nil
}

// objectBody is the optional body of POST /contacts/{external_id}/object.
type objectBody struct {
	Channel string `json:"channel"`
	Note    string `json:"note"`
}

// objectPost records the contact's objection to direct marketing: 201 with the new privacy
// request, or 200 with the earlier one when the objection was already on record. The body is
// optional (channel defaults to api).
func (h *Handler) objectPost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var body objectBody
	if err := httpx.DecodeOptionalJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	var obj Objection
	var contactID int64
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		c, err := contacts.Get(ctx, tx, p.WorkspaceID, extID)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.NotFound("no contact with this external_id")
		}
		if err != nil {
			return err
		}
		contactID = c.ID
		obj, err = h.Service.ObjectToMarketing(ctx, tx, p.WorkspaceID, c.ID, cmpOr(body.Channel, RequestChannelAPI), body.Note, p.Actor())
		if errors.Is(err, ErrContactGone) {
			return httpx.NewProblem(http.StatusConflict, "this contact's data has been erased")
		}
		return err
	})
	if err != nil {
		return err
	}
	obj.Request.ContactExternalID = extID
	status := http.StatusOK
	if obj.Created {
		status = http.StatusCreated
		h.logger().InfoContext(ctx, "objection recorded", "workspace_id", p.WorkspaceID, "contact_id",
			contactID, "request_id", obj.Request.ID, "withdrawn", obj.Withdrawn)
	}
	w.Header().Set("Location", "/v1/privacy-requests/"+strconv.FormatInt(obj.Request.ID, 10))
	httpx.WriteJSON(w, status, map[string]any{"privacy_request": privacyRequestOut(obj.Request, h.Service.now()),
		"withdrawn": obj.Withdrawn})
	return nil
}
