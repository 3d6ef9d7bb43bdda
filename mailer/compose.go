package mailer

import (
	"fmt"
	"net/mail"
	"sort"

	gomail "github.com/wneessen/go-mail"
)

// compose builds the MIME message for m: its fixed Message-ID, plain text with an HTML
// alternative, and the client's allow-listed headers.
func compose(m *Message) (*gomail.Msg, error) {
	msg := gomail.NewMsg()
	from := mail.Address{Name: m.FromName, Address: m.From}
	to := mail.Address{Name: m.ToName, Address: m.To}
	msg.FromMailAddress(&from)
	msg.ToMailAddress(&to)
	if err := msg.EnvelopeFrom(m.From); err != nil {
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
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	case m.HTML != "":
		msg.SetBodyString(gomail.TypeTextHTML, m.HTML)
	default:
		msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	}
	return msg, nil
}
