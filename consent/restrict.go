package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// Restriction is the outcome of Restrict.
type Restriction struct {
	Restricted   bool
	RestrictedAt *time.Time
	// Request is the completed privacy request of kind restrict that records a new restriction;
	// nil when the call changed nothing or lifted the restriction.
	Request *PrivacyRequest
	Changed bool
}

// Restrict sets (on true) or lifts (on false) the restriction of processing of a contact's data,
// in tx, on behalf of actor. A restricted contact keeps all its data but gets no marketing (Decide
// and DecideBatch answer ReasonRestricted) and no tracking (TrackingAllowed answers false, and
// the tracking event writer drops its events); transactional mail is unaffected.
//
// It takes the contact's consent lock and its consent state rows FOR UPDATE, as a withdrawal
// does, so a restriction committed before a marketing hand-off's decision is seen by it, and one
// committed later waits for the hand-off. Setting a restriction records a privacy request of kind
// restrict, completed at once; both directions are audited. A call that changes nothing writes
// nothing. ErrContactGone for an erased contact.
func (s *Service) Restrict(ctx context.Context, tx pgx.Tx, workspaceID, contactID int64, restrict bool, channel, note, actor string) (Restriction, error) {
	if _, err := contactAddress(ctx, tx, workspaceID, contactID, true); err != nil {
		return Restriction{}, fmt.Errorf("restrict: %w", err)
	}
	if err := s.LockContacts(ctx, tx, workspaceID, contactID); err != nil {
		return Restriction{}, fmt.Errorf("restrict: %w", err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM consent_state WHERE workspace_id = $1 AND contact_id = $2 FOR UPDATE`,
		workspaceID, contactID); err != nil {
		return Restriction{}, fmt.Errorf("restrict: lock consent state: %w", err)
	}
	var at *time.Time
	if err := tx.QueryRow(ctx, `SELECT restricted_at FROM contacts WHERE workspace_id = $1 AND id = $2`,
		workspaceID, contactID).Scan(&at); err != nil {
		return Restriction{}, fmt.Errorf("restrict: %w", err)
	}
	if (at != nil) == restrict {
		return Restriction{Restricted: restrict, RestrictedAt: at}, nil
	}
	out := Restriction{Restricted: restrict, Changed: true}
	if restrict {
		now := s.now()
		out.RestrictedAt = &now
	}
	if _, err := tx.Exec(ctx, `UPDATE contacts SET restricted_at = $3 WHERE workspace_id = $1 AND id = $2`,
		workspaceID, contactID, out.RestrictedAt); err != nil {
		return Restriction{}, fmt.Errorf("restrict: %w", err)
	}
	action, detail := "contact.unrestrict", map[string]any{}
	if restrict {
		req, err := s.RecordPrivacyRequest(ctx, tx, PrivacyRequest{WorkspaceID: workspaceID, ContactID: &contactID,
			Kind: RequestRestrict, Status: StatusCompleted, Channel: channel, Note: note}, actor)
		if err != nil {
			return Restriction{}, err
		}
		out.Request = &req
		action, detail = "contact.restrict", map[string]any{"privacy_request_id": req.ID}
	}
	err := AuditWrite(ctx, tx, Audit{WorkspaceID: workspaceID, Actor: actor, Action: action,
		Target: "contact:" + strconv.FormatInt(contactID, 10), Detail: detail})
	if err != nil {
		return Restriction{}, fmt.Errorf("restrict: %w", err)
	}
	return out, nil
}

// restrictPost (POST) restricts and restrictDelete (DELETE) lifts the restriction of
// /contacts/{external_id}/restrict. POST answers 201 with the privacy request when it restricted
// the contact, 200 when it was restricted already; DELETE answers 200 either way.
func (h *Handler) restrictPost(w http.ResponseWriter, r *http.Request) error {
	return h.restrict(w, r, true)
}

func (h *Handler) restrictDelete(w http.ResponseWriter, r *http.Request) error {
	return h.restrict(w, r, false)
}

func (h *Handler) restrict(w http.ResponseWriter, r *http.Request, restrict bool) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var body objectBody // the same optional {"channel", "note"}
	if err := httpx.DecodeOptionalJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	var res Restriction
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		c, err := contacts.Get(ctx, tx, p.WorkspaceID, extID)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.NotFound("no contact with this external_id")
		}
		if err != nil {
			return err
		}
		res, err = h.Service.Restrict(ctx, tx, p.WorkspaceID, c.ID, restrict, cmpOr(body.Channel, RequestChannelAPI), body.Note, p.Actor())
		if errors.Is(err, ErrContactGone) {
			return httpx.NewProblem(http.StatusConflict, "this contact's data has been erased")
		}
		return err
	})
	if err != nil {
		return err
	}
	out := map[string]any{"contact": extID, "restricted": res.Restricted, "restricted_at": res.RestrictedAt}
	status := http.StatusOK
	if res.Request != nil {
		res.Request.ContactExternalID = extID
		out["privacy_request"] = privacyRequestOut(*res.Request, h.Service.now())
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/privacy-requests/"+strconv.FormatInt(res.Request.ID, 10))
	}
	httpx.WriteJSON(w, status, out)
	return nil
}
