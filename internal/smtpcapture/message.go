package smtpcapture

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// Message is one message accepted (or, inside a DataHook, about to be judged) by the server.
// Raw, To and Header are shared with the server's store: treat them as read-only.
type Message struct {
	// ID is the message's sequence number in this server, starting at 1. It is assigned when the
	// message is accepted, so a DataHook sees 0.
	ID int64
	// ReceivedAt is when the DATA transfer ended.
	ReceivedAt time.Time
	// From is the envelope sender (MAIL FROM), empty for a null reverse-path.
	From string
	// To lists the envelope recipients (RCPT TO) that were accepted.
	To []string
	// Raw is the DATA as received, with dot-stuffing removed and CRLF line endings.
	Raw []byte
	// Header is the parsed header, nil if the message could not be parsed.
	Header mail.Header
	// Subject is the Subject header with RFC 2047 encoded words decoded.
	Subject string
	// MessageID is the Message-ID header as sent, angle brackets included.
	MessageID string
}

// Size is the length of the raw message in bytes.
func (m Message) Size() int { return len(m.Raw) }

var wordDecoder = &mime.WordDecoder{}

// newMessage builds a Message from an envelope and raw DATA, parsing what it can.
func newMessage(from string, to []string, raw []byte, at time.Time) *Message {
	m := &Message{ReceivedAt: at, From: from, To: to, Raw: raw}
	parsed, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return m
	}
	m.Header = parsed.Header
	m.MessageID = strings.TrimSpace(parsed.Header.Get("Message-ID"))
	subject := parsed.Header.Get("Subject")
	if decoded, err := wordDecoder.DecodeHeader(subject); err == nil {
		subject = decoded
	}
	m.Subject = subject
	return m
}
