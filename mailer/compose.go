package mailer

import (
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"unsafe"

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
// link in each part. Last, the message is DKIM-signed when its From domain has a key: the result
// then holds the signed bytes, which the relay sends without writing the message again.
//
// A campaign composes one message per recipient, so this is on the worker's hot path: it hands
// go-mail values it would otherwise parse or format again (see plainAddress, the Message-ID and
// oneClick), and the same bytes result.
func compose(m *Message, o composeOpts) (Composed, error) {
	// No User-Agent and X-Mailer: go-mail would name itself and its version in every message,
	// which tells nothing to a recipient and advertises the library to anyone probing for it.
	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	from := mail.Address{Name: m.FromName, Address: m.From}
	to := mail.Address{Name: m.ToName, Address: m.To}
	msg.FromMailAddress(&from)
	msg.ToMailAddress(&to)
	envelope := m.From
	if m.ReturnPath != "" {
		envelope = m.ReturnPath // VERP: bounces come back to an address naming this message
	}
	sender, err := parseMailAddress(envelope)
	if err != nil {
		return Composed{}, fmt.Errorf("compose: envelope sender: %w", err)
	}
	msg.EnvelopeFromMailAddress(sender)
	if m.ReplyTo != "" {
		replyTo, err := parseMailAddress(m.ReplyTo)
		if err != nil {
			return Composed{}, fmt.Errorf("compose: reply-to: %w", err)
		}
		msg.ReplyToMailAddress(replyTo)
	}
	msg.Subject(m.Subject)
	// What SetMessageIDWithValue stores, without its fmt.Sprintf.
	msg.SetGenHeader(gomail.HeaderMessageID, "<"+m.MessageID+">")
	msg.SetDateWithValue(m.CreatedAt)
	// go-mail writes generic fields sorted by name whatever the order they were set in, and the
	// names are distinct map keys: no need to sort them here.
	for k, v := range m.Headers {
		msg.SetGenHeader(gomail.Header(k), v)
	}
	msg.SetGenHeader("X-Herald-Stream", m.Stream)
	text, htmlBody := m.Text, m.HTML
	if m.Stream == StreamMarketing {
		if o.List == nil {
			return Composed{}, fmt.Errorf("compose: marketing message %s without unsubscribe headers", m.ID)
		}
		// go-mail writes both RFC 8058 fields and refuses a link that is not https; the plain
		// http link of a loopback dev server (see oneClickBase) gets the same two fields, and so
		// does a link already known to be one go-mail accepts and writes unchanged (oneClick).
		if o.List.oneClick || strings.HasPrefix(o.List.URL, "http://") {
			if v, ok := listUnsubscribeValue(o.List.URL, o.List.Mailto); ok {
				msg.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, v)
			} else {
				msg.SetListUnsubscribe(o.List.URL, o.List.Mailto)
			}
			msg.SetListUnsubscribePost()
		} else if err := msg.SetListUnsubscribeOneClick(o.List.URL, o.List.Mailto); err != nil {
			return Composed{}, fmt.Errorf("compose: list-unsubscribe: %w", err)
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
		msg.SetBodyWriter(gomail.TypeTextPlain, writeString(text))
		msg.AddAlternativeWriter(gomail.TypeTextHTML, writeString(htmlBody))
	case htmlBody != "":
		msg.SetBodyWriter(gomail.TypeTextHTML, writeString(htmlBody))
	default:
		msg.SetBodyWriter(gomail.TypeTextPlain, writeString(text))
	}
	if err := attachAll(msg, m.Attachments); err != nil {
		return Composed{}, fmt.Errorf("compose: %w", err)
	}
	c, err := o.DKIM.sign(msg, m.From, o.Logger)
	if err != nil {
		return Composed{}, fmt.Errorf("compose: %w", err)
	}
	return c, nil
}

// listUnsubscribeValue is the List-Unsubscribe value SetListUnsubscribe(link, mailto) stores,
// "<link>, <mailto>", in one string; ok is false for a URI it would trim or unwrap first (empty,
// with white space at either end, already in angle brackets), left to go-mail.
func listUnsubscribeValue(link, mailto string) (string, bool) {
	for _, u := range [...]string{link, mailto} {
		if u == "" || strings.TrimSpace(u) != u || u[0] == '<' || u[len(u)-1] == '>' {
			return "", false
		}
	}
	return "<" + link + ">, <" + mailto + ">", true
}

// writeString is the body writer of a part holding s, as SetBodyString's but without its copy of
// s: go-mail hands it the part's encoder (quoted-printable here), and an io.Writer may neither
// keep nor modify the slice it is given, so the string's own bytes can be written.
func writeString(s string) func(io.Writer) (int64, error) {
	return func(w io.Writer) (int64, error) {
		n, err := w.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
		return int64(n), err
	}
}

// parseMailAddress is mail.ParseAddress, which go-mail's EnvelopeFrom and ReplyTo call, with a
// short cut for a bare ASCII addr-spec such as a VERP return path: for that the parser returns
// the address as it is, with no name.
func parseMailAddress(s string) (*mail.Address, error) {
	if plainAddress(s) {
		return &mail.Address{Address: s}, nil
	}
	return mail.ParseAddress(s)
}

// plainAddress reports whether s is local@domain with both parts dot-atoms of ASCII atext (RFC
// 5322 3.2.3: no leading, trailing or double dot): the addresses net/mail parses to themselves
// and formats without quoting.
func plainAddress(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && dotAtom(s[:at]) && dotAtom(s[at+1:])
}

func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.':
			if s[i-1] == '.' {
				return false
			}
		case c <= ' ' || c > '~':
			return false
		case c == '(' || c == ')' || c == '<' || c == '>' || c == '[' || c == ']' || c == ':' || c == ';' ||
			c == '@' || c == '\\' || c == ',' || c == '"':
			return false // RFC 5322 specials
		}
	}
	return true
}
