package campaigns

import (
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	gomail "github.com/wneessen/go-mail"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
)

// viewTokenDomain separates view-online tokens from every other signed token (see
// consent.Keys.SignIDs): an unsubscribe token is never a view token, nor the reverse.
const viewTokenDomain = "herald/view/v1"

// ViewURL is the link of a view-online token: BASE/v/TOKEN.
func ViewURL(baseURL, token string) string {
	return strings.TrimRight(baseURL, "/") + "/v/" + token
}

// viewURL is r's view-online link. Its token names the workspace, the campaign and the
// recipient row, and nothing personal.
func (b *sendRun) viewURL(r *claimedRecipient) string {
	return ViewURL(b.c.List.BaseURL, b.w.Consent.Keys.SignIDs(viewTokenDomain, b.c.WorkspaceID, b.c.ID, r.ID))
}

// ViewHandler serves GET /v/{token}, the web version of a campaign message: the HTML part of the
// very message the recipient got, built by the batch worker's own code from the frozen template
// version, the contact's current fields and the recipient's own links. It is public (the signed
// token is the only credential) and shown only while the contact exists: an erased or deleted
// contact's page is gone. A withdrawal of consent does not hide it; the recipient had the mail.
type ViewHandler struct {
	DB      *pgxpool.Pool
	Consent *consent.Service
	Logger  *slog.Logger
	// BaseURL and InboundDomain are the campaign worker's (StateCache): the links in the page
	// must be the links in the mail.
	BaseURL       string
	InboundDomain string

	states *StateCache
}

// Routes mounts GET /v/{token} at the root of r, next to the recipients' /u/{token} pages.
func (h *ViewHandler) Routes(r chi.Router) {
	h.states = &StateCache{DB: h.DB, BaseURL: h.BaseURL, InboundDomain: h.InboundDomain, Logger: h.logger()}
	r.Get("/v/{token}", h.view)
}

func (h *ViewHandler) logger() *slog.Logger { return httpx.LoggerOrDiscard(h.Logger) }

// viewRecipientSQL reads a recipient with its campaign's workspace and its contact as the claim
// of the batch worker reads it (sendClaimSQL), so the page renders the same data.
const viewRecipientSQL = `
	SELECT cp.workspace_id, r.contact_id, r.address, c.id IS NOT NULL AND c.email <> '',
		coalesce(c.external_id, ''), coalesce(c.email, ''), coalesce(c.name, ''), coalesce(c.locale, ''),
		coalesce(c.timezone, ''), coalesce(c.attributes, '{}'::jsonb)
	FROM campaign_recipients r
	JOIN campaigns cp ON cp.id = r.campaign_id
	LEFT JOIN contacts c ON c.id = r.contact_id AND c.workspace_id = cp.workspace_id
	WHERE r.id = $2 AND r.campaign_id = $1`

func (h *ViewHandler) view(w http.ResponseWriter, r *http.Request) {
	ids, err := h.Consent.Keys.ParseIDs(viewTokenDomain, chi.URLParam(r, "token"), 3)
	if err != nil || ids[0] <= 0 || ids[1] <= 0 || ids[2] <= 0 {
		h.message(w, http.StatusBadRequest, "Invalid link",
			"This link is not valid. Please use the link from the email exactly as you received it.")
		return
	}
	ctx := r.Context()
	workspaceID, campaignID := ids[0], ids[1]
	rcpt := &claimedRecipient{ID: ids[2]}
	c := &contacts.Contact{}
	var exists bool
	err = h.DB.QueryRow(ctx, viewRecipientSQL, campaignID, rcpt.ID).Scan(&c.WorkspaceID, &rcpt.ContactID, &rcpt.Address,
		&exists, &c.ExternalID, &c.Email, &c.Name, &c.Locale, &c.Timezone, &c.Attributes)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		h.gone(w)
		return
	case err != nil:
		h.failed(w, r, campaignID, fmt.Errorf("view online: recipient %d: %w", rcpt.ID, err))
		return
	case c.WorkspaceID != workspaceID:
		// Only a token signed for one workspace naming another's campaign gets here.
		h.message(w, http.StatusBadRequest, "Invalid link",
			"This link is not valid. Please use the link from the email exactly as you received it.")
		return
	case !exists:
		h.gone(w)
		return
	}
	c.ID = rcpt.ContactID
	rcpt.Contact = c
	content, err := h.states.content(ctx, campaignID)
	if errors.Is(err, db.ErrNotFound) {
		h.gone(w)
		return
	}
	if err != nil {
		h.failed(w, r, campaignID, fmt.Errorf("view online: %w", err))
		return
	}
	// The worker's own build: same data, links, footer and checks as the mail. No DKIM key is
	// configured here, so nothing is signed.
	run := &sendRun{w: &SendBatchWorker{Consent: h.Consent, Logger: h.logger()}, c: content}
	msg, err := run.build(ctx, rcpt)
	if err != nil {
		// The contact's data no longer renders (or never did: such a message was not sent).
		h.logger().WarnContext(ctx, "view online: message not built", "campaign_id", campaignID,
			"recipient_id", rcpt.ID, "err", err)
		h.gone(w)
		return
	}
	page, err := viewBody(msg)
	if err != nil {
		h.failed(w, r, campaignID, fmt.Errorf("view online: recipient %d: %w", rcpt.ID, err))
		return
	}
	setViewHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, page)
}

// viewBody is the message's HTML part as sent, or for a text-only message its text, escaped.
func viewBody(msg *gomail.Msg) (string, error) {
	var text []byte
	for _, p := range msg.GetParts() {
		switch p.GetContentType() {
		case gomail.TypeTextHTML:
			b, err := p.GetContent()
			return string(b), err
		case gomail.TypeTextPlain:
			b, err := p.GetContent()
			if err != nil {
				return "", err
			}
			text = b
		}
	}
	if text == nil {
		return "", errors.New("message has no body")
	}
	title := "Message"
	if s := msg.GetGenHeader(gomail.HeaderSubject); len(s) > 0 && s[0] != "" {
		title = s[0]
	}
	return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>` + html.EscapeString(title) +
		`</title></head><body><pre style="white-space:pre-wrap;font-family:inherit">` +
		html.EscapeString(string(text)) + `</pre></body></html>`, nil
}

// setViewHeaders lets the page show the message's inline styles and remote images but run
// nothing, keeps it out of frames, caches and search engines, and keeps its URL (holding the
// token) out of Referer headers, including those of the images it loads.
func setViewHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "+
		"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

// message writes a small page (title and message are fixed text, never data).
func (h *ViewHandler) message(w http.ResponseWriter, status int, title, msg string) {
	setViewHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>`+
		html.EscapeString(title)+`</title></head><body><h1>`+html.EscapeString(title)+`</h1><p>`+
		html.EscapeString(msg)+`</p></body></html>`)
}

func (h *ViewHandler) gone(w http.ResponseWriter) {
	h.message(w, http.StatusNotFound, "Message not available", "This message is no longer available online.")
}

func (h *ViewHandler) failed(w http.ResponseWriter, r *http.Request, campaignID int64, err error) {
	h.logger().ErrorContext(r.Context(), "view online failed", "campaign_id", campaignID, "err", err)
	h.message(w, http.StatusInternalServerError, "Something went wrong",
		"This message could not be shown. Please try again in a few minutes.")
}
