package consent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	htmltemplate "html/template"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/internal/workspace"
)

// RightsMailer queues the emails of the preference centre's export: the confirmation link, and
// the export itself as an attachment, as transactional messages inserted and enqueued in tx.
type RightsMailer interface {
	SendRights(ctx context.Context, tx pgx.Tx, e RightsEmail) (messageID string, err error)
}

// RightsEmail is one such email. IdempotencyKey makes a repeated call return the first message.
type RightsEmail struct {
	WorkspaceID    int64
	ContactID      int64
	IdempotencyKey string
	From           string
	To             string
	ToName         string
	Subject        string
	Text           string
	HTML           string
	Attachments    []Attachment
}

// Attachment is a file attached to an email.
type Attachment struct {
	Filename    string
	ContentType string
	Data        []byte
}

// exportTokenDomain signs the export confirmation links: workspace, contact, privacy request and
// the link's expiry (Unix seconds) as ids.
const exportTokenDomain = "herald/export-confirm/v1"

// defaultExportLinkTTL is how long an export confirmation link stays valid by default.
const defaultExportLinkTTL = 72 * time.Hour

// exportRequestCooldown is how long after an unconfirmed export request from the preference
// centre another press of the button sends no second email.
const exportRequestCooldown = 24 * time.Hour

// RightsRoutes mounts GET /contacts/{external_id}/export and POST /contacts/{external_id}/erase
// (scope privacy, or admin) on an authenticated /v1 router. h.Rights must be set.
func (h *Handler) RightsRoutes(r chi.Router) {
	log := h.logger()
	r.Group(func(r chi.Router) {
		r.Use(workspace.Require(log, workspace.ScopePrivacy))
		r.Get("/contacts/{external_id}/export", httpx.Handler(log, h.exportGet))
		r.Post("/contacts/{external_id}/erase", httpx.Handler(log, h.erasePost))
	})
}

// RightsPageRoutes mounts the export confirmation link, /privacy/export/{token}: GET shows a
// button and changes nothing (mail scanners open links), POST sends the export.
func (h *Handler) RightsPageRoutes(r chi.Router) {
	r.Get("/privacy/export/{token}", h.exportConfirmShow)
	r.Post("/privacy/export/{token}", h.exportConfirm)
}

// resolveContact finds the workspace's contact by the CRM's id, live or erased (then under its
// ErasedExternalID). A missing one is a 404 problem.
func (h *Handler) resolveContact(ctx context.Context, q db.Querier, workspaceID int64, extID string) (id int64, erased bool, err error) {
	c, err := contacts.Get(ctx, q, workspaceID, extID)
	if errors.Is(err, db.ErrNotFound) {
		c, err = contacts.Get(ctx, q, workspaceID, h.Service.Keys.ErasedExternalID(workspaceID, extID))
		if errors.Is(err, db.ErrNotFound) {
			return 0, false, httpx.NotFound("no contact with this external_id")
		}
		if err != nil {
			return 0, false, err
		}
		return c.ID, true, nil
	}
	if err != nil {
		return 0, false, err
	}
	return c.ID, c.Email == "", nil
}

// problemErased answers a request about an erased contact.
func problemErased() error {
	return httpx.NewProblem(http.StatusGone, "this contact's data has been erased")
}

// exportGet answers the export document of one contact, read in one REPEATABLE READ
// transaction that also records the completed export request and its audit entry.
func (h *Handler) exportGet(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var doc []byte
	var req PrivacyRequest
	err = pgx.BeginTxFunc(ctx, h.DB, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		id, erased, err := h.resolveContact(ctx, tx, p.WorkspaceID, extID)
		if err != nil {
			return err
		}
		if erased {
			return problemErased()
		}
		if doc, err = h.Rights.Export(ctx, tx, p.WorkspaceID, id); errors.Is(err, ErrContactGone) {
			return problemErased()
		} else if err != nil {
			return err
		}
		req, err = h.Rights.RecordExport(ctx, tx, p.WorkspaceID, id, RequestChannelAPI, p.Actor(), len(doc))
		return err
	})
	if err != nil {
		return problem(err)
	}
	h.logger().InfoContext(ctx, "contact exported", "workspace_id", p.WorkspaceID, "request_id", req.ID, "bytes", len(doc))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+exportFilename(req.ID)+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
	return nil
}

func exportFilename(requestID int64) string {
	return "herald-export-" + strconv.FormatInt(requestID, 10) + ".json"
}

// eraseBody is the optional body of POST /contacts/{external_id}/erase: how the request came in.
type eraseBody struct {
	Channel string `json:"channel"`
}

// erasePost erases one contact's personal data: 201 with the completed request and the counts,
// or 200 with the earlier request when the contact was erased before.
func (h *Handler) erasePost(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	p := workspace.MustFromContext(ctx)
	extID, err := contacts.ExternalIDParam(r)
	if err != nil {
		return err
	}
	var body eraseBody
	if err := httpx.DecodeOptionalJSON(w, r, h.maxBody(), &body); err != nil {
		return err
	}
	channel := cmpOr(body.Channel, RequestChannelAPI)
	if !slices.Contains(RequestChannels, channel) {
		return httpx.Invalid("channel", "must be one of "+strings.Join(RequestChannels, ", "))
	}
	var er Erasure
	start := time.Now()
	err = h.inTx(ctx, func(tx pgx.Tx) error {
		id, _, err := h.resolveContact(ctx, tx, p.WorkspaceID, extID)
		if err != nil {
			return err
		}
		er, err = h.Rights.Erase(ctx, tx, p.WorkspaceID, id, channel, p.Actor())
		return err
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if er.Created {
		status = http.StatusCreated
		h.logger().InfoContext(ctx, "contact erased", "workspace_id", p.WorkspaceID, "request_id", er.Request.ID,
			"removed", er.Removed, "ms", time.Since(start).Milliseconds())
	}
	removed := er.Removed
	if removed == nil {
		removed = map[string]int64{}
	}
	w.Header().Set("Location", "/v1/privacy-requests/"+strconv.FormatInt(er.Request.ID, 10))
	httpx.WriteJSON(w, status, map[string]any{"privacy_request": privacyRequestOut(er.Request, h.Service.now()),
		"removed": removed})
	return nil
}

// exportRequest is the preference centre's "Send me a copy of my data" button (POST /u/{token}
// with action=export): it records an export request (channel preference_centre) and emails a
// confirmation link to the address on file. Only that link sends the data, so whoever holds a
// forwarded preference link learns nothing. A second press within a day of an unconfirmed
// request sends nothing more.
func (h *Handler) exportRequest(w http.ResponseWriter, r *http.Request, rcpt Recipient) {
	if h.Rights == nil || h.Rights.Mailer == nil {
		h.writeMessage(w, http.StatusNotFound, "Not available", "Copies of your data cannot be requested here. Please contact us.")
		return
	}
	ctx := r.Context()
	var noSender bool
	err := pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		addr, err := contactAddress(ctx, tx, rcpt.WorkspaceID, rcpt.ContactID, true)
		if err != nil {
			return err
		}
		settings, err := SettingsGet(ctx, tx, rcpt.WorkspaceID)
		if err != nil {
			return err
		}
		if settings.ConfirmFrom == "" {
			noSender = true
			return nil
		}
		now := h.Service.now().UTC()
		var recent bool
		err = tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM privacy_requests WHERE workspace_id = $1 AND contact_id = $2
			AND kind = 'export' AND channel = 'preference_centre' AND status = 'received' AND received_at > $3)`,
			rcpt.WorkspaceID, rcpt.ContactID, now.Add(-exportRequestCooldown)).Scan(&recent)
		if err != nil || recent {
			return err
		}
		req, err := h.Service.RecordPrivacyRequest(ctx, tx, PrivacyRequest{WorkspaceID: rcpt.WorkspaceID,
			ContactID: &rcpt.ContactID, Kind: RequestExport, Channel: RequestChannelPreferenceCentre}, ActorRecipient)
		if err != nil {
			return err
		}
		var name, wsName string
		if err := tx.QueryRow(ctx, `SELECT c.name, w.name FROM contacts c JOIN workspaces w ON w.id = c.workspace_id
			WHERE c.workspace_id = $1 AND c.id = $2`, rcpt.WorkspaceID, rcpt.ContactID).Scan(&name, &wsName); err != nil {
			return fmt.Errorf("export request: %w", err)
		}
		expires := now.Add(h.exportLinkTTL()).Truncate(time.Second)
		token := h.Service.Keys.SignIDs(exportTokenDomain, rcpt.WorkspaceID, rcpt.ContactID, req.ID, expires.Unix())
		link := strings.TrimRight(h.BaseURL, "/") + "/privacy/export/" + token
		e := exportConfirmEmail(wsName, link, expires)
		e.WorkspaceID, e.ContactID, e.From, e.To, e.ToName = rcpt.WorkspaceID, rcpt.ContactID, settings.ConfirmFrom, addr, name
		e.IdempotencyKey = "export-confirm:" + strconv.FormatInt(req.ID, 10)
		if _, err := h.Rights.Mailer.SendRights(ctx, tx, e); err != nil {
			return fmt.Errorf("export request: %w", err)
		}
		h.logger().InfoContext(ctx, "export requested", "workspace_id", rcpt.WorkspaceID, "request_id", req.ID)
		return nil
	})
	if h.pageError(w, r, err) {
		return
	}
	if noSender {
		h.writeMessage(w, http.StatusConflict, "Not available", "Copies of your data cannot be requested here. Please contact us.")
		return
	}
	h.writeMessage(w, http.StatusOK, "Check your inbox",
		"We have sent a confirmation link to your email address. Open it and press the button to receive a copy of your data.")
}

func (h *Handler) exportLinkTTL() time.Duration {
	if h.Rights != nil && h.Rights.LinkTTL > 0 {
		return h.Rights.LinkTTL
	}
	return defaultExportLinkTTL
}

func exportConfirmEmail(wsName, link string, expires time.Time) RightsEmail {
	until := expires.UTC().Format("2 January 2006 15:04 MST")
	text := fmt.Sprintf("Hello,\n\nSomeone, we hope you, asked %s for a copy of the data it holds about this email address.\n\n"+
		"To receive it by email, open this link and press the button on the page:\n%s\n\n"+
		"The link works until %s. If you did not ask for this, ignore this email: nothing will be sent.\n", wsName, link, until)
	var html strings.Builder
	_ = rightsEmailHTML.Execute(&html, map[string]string{"Workspace": wsName, "Link": link, "Until": until})
	return RightsEmail{Subject: "Confirm your request for a copy of your data", Text: text, HTML: html.String()}
}

// exportLink is what a valid export confirmation token names.
type exportLink struct {
	WorkspaceID, ContactID, RequestID int64
	Expires                           time.Time
}

// parseExportLink checks the token's signature; ok is false for anything forged or malformed.
func (h *Handler) parseExportLink(token string) (exportLink, bool) {
	ids, err := h.Service.Keys.ParseIDs(exportTokenDomain, token, 4)
	if err != nil || ids[0] == 0 || ids[1] == 0 || ids[2] == 0 {
		return exportLink{}, false
	}
	return exportLink{WorkspaceID: ids[0], ContactID: ids[1], RequestID: ids[2], Expires: time.Unix(ids[3], 0)}, true
}

// exportPending checks the request a link names, in q (locked when lock is set): page is the
// page to show instead of going on, or "" when the request awaits confirmation.
func (h *Handler) exportPending(ctx context.Context, q db.Querier, l exportLink, lock bool) (status int, title, msg string, err error) {
	if !h.Service.now().Before(l.Expires) {
		return http.StatusGone, "Link expired", "This link has expired. Please ask for a copy of your data again from the email preferences page.", nil
	}
	lockClause := ""
	if lock {
		lockClause = "FOR UPDATE OF r"
	}
	req, err := privacyRequestGet(ctx, q, l.WorkspaceID, l.RequestID, lockClause)
	if errors.Is(err, db.ErrNotFound) || (err == nil && (req.Kind != RequestExport || req.ContactID == nil || *req.ContactID != l.ContactID)) {
		return http.StatusBadRequest, "Invalid link", "This link is not valid. Please use the link from the email exactly as you received it.", nil
	}
	if err != nil {
		return 0, "", "", err
	}
	switch req.Status {
	case StatusCompleted:
		return http.StatusOK, "Already sent", "A copy of your data has already been sent to your email address.", nil
	case StatusRejected:
		return http.StatusGone, "Request closed", "This request has been closed. Please contact us if you still want a copy of your data.", nil
	}
	return 0, "", "", nil
}

// exportConfirmShow answers GET of the confirmation link: it only reads, and offers the button.
func (h *Handler) exportConfirmShow(w http.ResponseWriter, r *http.Request) {
	l, ok := h.parseExportLink(chi.URLParam(r, "token"))
	if !ok {
		h.badLink(w)
		return
	}
	status, title, msg, err := h.exportPending(r.Context(), h.DB, l, false)
	if err != nil {
		h.failed(w, r, err)
		return
	}
	if status != 0 {
		h.writeMessage(w, status, title, msg)
		return
	}
	if _, err := contactAddress(r.Context(), h.DB, l.WorkspaceID, l.ContactID, false); h.pageError(w, r, err) {
		return
	}
	h.render(w, http.StatusOK, "export-confirm", nil)
}

// exportConfirm answers POST of the confirmation link: in one transaction, with the request
// locked (so two presses send one email), it builds the export, queues it as an attachment to
// the address on file through the transactional path, completes the request and audits it.
func (h *Handler) exportConfirm(w http.ResponseWriter, r *http.Request) {
	l, ok := h.parseExportLink(chi.URLParam(r, "token"))
	if !ok {
		h.badLink(w)
		return
	}
	if h.Rights == nil || h.Rights.Mailer == nil {
		h.writeMessage(w, http.StatusNotFound, "Not available", "Copies of your data cannot be requested here. Please contact us.")
		return
	}
	ctx := r.Context()
	var status int
	var title, msg string
	err := pgx.BeginFunc(ctx, h.DB, func(tx pgx.Tx) error {
		var err error
		if status, title, msg, err = h.exportPending(ctx, tx, l, true); err != nil || status != 0 {
			return err
		}
		addr, err := contactAddress(ctx, tx, l.WorkspaceID, l.ContactID, false)
		if err != nil {
			return err
		}
		settings, err := SettingsGet(ctx, tx, l.WorkspaceID)
		if err != nil {
			return err
		}
		if settings.ConfirmFrom == "" {
			status, title, msg = http.StatusConflict, "Not available", "Copies of your data cannot be sent at the moment. Please contact us."
			return nil
		}
		doc, err := h.Rights.Export(ctx, tx, l.WorkspaceID, l.ContactID)
		if err != nil {
			return err
		}
		var name, wsName string
		if err := tx.QueryRow(ctx, `SELECT c.name, w.name FROM contacts c JOIN workspaces w ON w.id = c.workspace_id
			WHERE c.workspace_id = $1 AND c.id = $2`, l.WorkspaceID, l.ContactID).Scan(&name, &wsName); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		e := RightsEmail{WorkspaceID: l.WorkspaceID, ContactID: l.ContactID, From: settings.ConfirmFrom, To: addr, ToName: name,
			IdempotencyKey: "export:" + strconv.FormatInt(l.RequestID, 10),
			Subject:        "A copy of your data at " + wsName,
			Text: "Hello,\n\nAttached is a copy of the data " + wsName + " holds about this email address, as you asked, " +
				"in JSON (schema " + ExportSchema + ").\n",
			Attachments: []Attachment{{Filename: exportFilename(l.RequestID), ContentType: "application/json", Data: doc}}}
		if _, err := h.Rights.Mailer.SendRights(ctx, tx, e); err != nil {
			return fmt.Errorf("send export: %w", err)
		}
		if _, err := h.Service.CompletePrivacyRequest(ctx, tx, l.WorkspaceID, l.RequestID, ActorRecipient); err != nil {
			return err
		}
		err = AuditWrite(ctx, tx, Audit{WorkspaceID: l.WorkspaceID, Actor: ActorRecipient, Action: "contact.export",
			Target: "contact:" + strconv.FormatInt(l.ContactID, 10), Detail: map[string]any{"privacy_request_id": l.RequestID, "bytes": len(doc)}})
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		status, title, msg = http.StatusOK, "On its way", "A copy of your data is on its way to your email address."
		h.logger().InfoContext(ctx, "export sent", "workspace_id", l.WorkspaceID, "request_id", l.RequestID, "bytes", len(doc))
		return nil
	})
	if h.pageError(w, r, err) {
		return
	}
	h.writeMessage(w, status, title, msg)
}

var rightsEmailHTML = htmltemplate.Must(htmltemplate.New("export-confirm-email").Parse(`<!doctype html>
<html><body style="font-family:sans-serif;line-height:1.5;color:#222">
<p>Hello,</p>
<p>Someone, we hope you, asked {{.Workspace}} for a copy of the data it holds about this email address.</p>
<p><a href="{{.Link}}">Confirm and receive a copy of my data</a></p>
<p>The link works until {{.Until}}. If you did not ask for this, ignore this email: nothing will be sent.</p>
</body></html>`))
