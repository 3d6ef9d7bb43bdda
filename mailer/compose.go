package mailer

import (
	"fmt"
	"log/slog"
	"net/mail"
	"sort"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// composeOpts is what compose adds beyond the stored message.
type composeOpts struct {
	// List is set for marketing messages, which may not be composed without it.
	List   *listInfo
	DKIM   *DKIM
	Logger *slog.Logger
}

// compose builds the MIME message for m: its fixed Message-ID, plain text with an HTML
// alternative, and the client's allow-listed headers. A marketing message also gets
// List-Unsubscribe (https and mailto), List-Unsubscribe-Post, List-Id and a visible unsubscribe
// link in each part. Last, the message is DKIM-signed when its From domain has a key.
func compose(m *Message, o composeOpts) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	from := mail.Address{Name: m.FromName, Address: m.From}
	to := mail.Address{Name: m.ToName, Address: m.To}
	msg.FromMailAddress(&from)
	msg.ToMailAddress(&to)
	envelope := m.From
	if m.ReturnPath != "" {
		envelope = m.ReturnPath // VERP: bounces come back to an address naming this message
	}
	if err := msg.EnvelopeFrom(envelope); err != nil {
		return nil, fmt.Errorf("compose: envelope sender: %w", err)
	}
	if m.ReplyTo != "" {
		if err := msg.ReplyTo(m.ReplyTo); err != nil {
			return nil, fmt.Errorf("compose: reply-to: %w", err)
		}
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(m.MessageID)
	msg.SetDateWithValue(m.CreatedAt)
	names := make([]string, 0, len(m.Headers))
	for k := range m.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		msg.SetGenHeader(gomail.Header(k), m.Headers[k])
	}
	msg.SetGenHeader("X-Herald-Stream", m.Stream)
	text, htmlBody := m.Text, m.HTML
	if m.Stream == StreamMarketing {
		if o.List == nil {
			return nil, fmt.Errorf("compose: marketing message %s without unsubscribe headers", m.ID)
		}
		// go-mail writes both RFC 8058 fields and refuses a link that is not https; the plain
		// http link of a loopback dev server (see oneClickBase) gets the same two fields.
		if strings.HasPrefix(o.List.URL, "http://") {
			msg.SetListUnsubscribe(o.List.URL, o.List.Mailto)
			msg.SetListUnsubscribePost()
		} else if err := msg.SetListUnsubscribeOneClick(o.List.URL, o.List.Mailto); err != nil {
			return nil, fmt.Errorf("compose: list-unsubscribe: %w", err)
		}
		msg.SetGenHeaderPreformatted("List-Id", o.List.ListID)
		if text != "" || htmlBody == "" {
			text = withTextFooter(text, o.List.URL)
		}
		if htmlBody != "" {
			htmlBody = withHTMLFooter(htmlBody, o.List.URL)
		}
	}
	switch {
	case text != "" && htmlBody != "":
		msg.SetBodyString(gomail.TypeTextPlain, text)
		msg.AddAlternativeString(gomail.TypeTextHTML, htmlBody)
	case htmlBody != "":
		msg.SetBodyString(gomail.TypeTextHTML, htmlBody)
	default:
		msg.SetBodyString(gomail.TypeTextPlain, text)
	}
	if err := attachAll(msg, m.Attachments); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	if err := o.DKIM.sign(msg, m.From, o.Logger); err != nil {
		return nil, fmt.Errorf("compose: %w", err)
	}
	return msg, nil
}
