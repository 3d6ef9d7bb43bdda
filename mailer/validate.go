package mailer

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/contacts"
	"herald/internal/db"
	"herald/internal/httpx"
	"herald/templates"
)

const maxSubjectLen = 998

// buildMessage validates a send request and turns it into a message: the recipient (a bare
// address or a contact), the sender, and the content (given directly or rendered from a stored
// template). Every error is a 422 problem naming the field.
func buildMessage(ctx context.Context, tx pgx.Tx, workspaceID int64, req *sendRequest) (*Message, error) {
	m := &Message{WorkspaceID: workspaceID, Stream: StreamTransactional}
	switch req.Stream {
	case "", StreamTransactional:
		if req.Purpose != "" {
			return nil, httpx.Invalid("purpose", "only marketing messages have a purpose")
		}
	case StreamMarketing:
		// Marketing consent is given per contact and purpose, so both are required.
		if req.Contact == "" {
			return nil, httpx.Invalid("contact", "a marketing message goes to a contact (external_id), whose consent is checked")
		}
		if req.Purpose == "" {
			return nil, httpx.Invalid("purpose", "a marketing message needs the consent purpose it is sent for")
		}
		p, err := consent.PurposeGet(ctx, tx, workspaceID, req.Purpose)
		switch {
		case errors.Is(err, db.ErrNotFound):
			return nil, httpx.Invalid("purpose", "no such purpose in this workspace")
		case err != nil:
			return nil, err
		case p.Kind != consent.PurposeMarketing:
			return nil, httpx.Invalid("purpose", "the tracking purpose governs open and click tracking; marketing is sent for a marketing purpose")
		}
		m.Stream, m.Purpose = StreamMarketing, req.Purpose
	default:
		return nil, httpx.Invalid("stream", "must be transactional or marketing")
	}
	var contact *contacts.Contact
	switch {
	case req.To != "" && req.Contact != "":
		return nil, httpx.Invalid("to", "give either to or contact, not both")
	case req.Contact != "":
		c, err := contacts.Get(ctx, tx, workspaceID, req.Contact)
		if errors.Is(err, db.ErrNotFound) {
			return nil, httpx.Invalid("contact", "no contact with this external_id")
		}
		if err != nil {
			return nil, err
		}
		contact = &c
		m.ContactID, m.To, m.ToName = &c.ID, c.Email, c.Name
	case req.To != "":
		name, addr, err := parseAddress(req.To)
		if err != nil {
			return nil, httpx.Invalid("to", err.Error())
		}
		m.To, m.ToName = addr, name
	default:
		return nil, httpx.Invalid("to", "a recipient is required: to (an address) or contact (an external_id)")
	}
	if req.From == "" {
		return nil, httpx.Invalid("from", "a sender address is required")
	}
	name, addr, err := parseAddress(req.From)
	if err != nil {
		return nil, httpx.Invalid("from", err.Error())
	}
	m.From, m.FromName = addr, name
	if req.ReplyTo != "" {
		_, addr, err := parseAddress(req.ReplyTo)
		if err != nil {
			return nil, httpx.Invalid("reply_to", err.Error())
		}
		m.ReplyTo = addr
	}
	if m.Headers, err = validateHeaders(req.Headers); err != nil {
		return nil, httpx.Invalid("headers", err.Error())
	}
	if err := content(ctx, tx, workspaceID, req, contact, m); err != nil {
		return nil, err
	}
	return m, nil
}

// content fills subject and bodies, from the request or from a rendered template.
func content(ctx context.Context, tx pgx.Tx, workspaceID int64, req *sendRequest, contact *contacts.Contact, m *Message) error {
	if req.Template != "" {
		if req.Subject != "" || req.HTML != "" || req.Text != "" {
			return httpx.Invalid("template", "give either template or subject/html/text, not both")
		}
		t, err := templates.Get(ctx, tx, workspaceID, req.Template, req.TemplateVersion)
		if errors.Is(err, db.ErrNotFound) {
			return httpx.Invalid("template", "no such template (or version)")
		}
		if err != nil {
			return err
		}
		data := map[string]any{}
		for k, v := range req.Data {
			data[k] = v
		}
		if contact != nil {
			if _, ok := data["contact"]; !ok {
				data["contact"] = templates.ContactData(*contact)
			}
		}
		out, err := templates.Render(t, data)
		if err != nil {
			return httpx.Invalid("data", err.Error())
		}
		m.Subject, m.HTML, m.Text = out.Subject, out.HTML, out.Text
	} else {
		if req.Data != nil {
			return httpx.Invalid("data", "data is only used with a template")
		}
		m.Subject, m.HTML, m.Text = req.Subject, req.HTML, req.Text
		if m.HTML != "" {
			m.HTML = templates.Sanitize(m.HTML)
			if m.Text == "" {
				m.Text = templates.TextFromHTML(m.HTML)
			}
		}
	}
	switch {
	case strings.TrimSpace(m.Subject) == "":
		return httpx.Invalid("subject", "a subject is required")
	case strings.ContainsAny(m.Subject, "\r\n\x00"):
		return httpx.Invalid("subject", "must not contain line breaks or NUL")
	case len(m.Subject) > maxSubjectLen:
		return httpx.Invalid("subject", fmt.Sprintf("longer than %d bytes", maxSubjectLen))
	case m.HTML == "" && m.Text == "":
		return httpx.Invalid("html", "a body is required: html, text or both")
	case strings.ContainsRune(m.Text, 0) || strings.ContainsRune(m.HTML, 0):
		return httpx.Invalid("text", "body must not contain NUL")
	}
	return nil
}

// parseAddress accepts "addr@example.com" or "Name <addr@example.com>" and returns the display
// name and the normalised address.
func parseAddress(s string) (name, addr string, err error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", "", errors.New("must not contain line breaks or NUL")
	}
	if len(s) > 512 {
		return "", "", errors.New("too long")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a valid address", truncate(s, 80))
	}
	if strings.ContainsAny(a.Name, "\r\n\x00") {
		return "", "", errors.New("display name must not contain line breaks")
	}
	addr, err = contacts.NormalizeAddress(a.Address)
	if err != nil {
		return "", "", err
	}
	return a.Name, addr, nil
}
