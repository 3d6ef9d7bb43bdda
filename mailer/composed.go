package mailer

import (
	"io"

	gomail "github.com/wneessen/go-mail"
)

// Composed is a message ready for a Transport: the go-mail message and, when it was DKIM-signed,
// the bytes the signature covers. Signing has to write the message, and go-mail's WriteTo is
// about a third of a campaign message's CPU; a relay therefore sends the signed bytes as they are
// instead of having go-mail write the message a second time. Composed{Msg: msg} is an unsigned
// message, which a relay writes with go-mail as before.
type Composed struct {
	// Msg is the message. Once signed it must not change: the relay sends what was signed.
	Msg *gomail.Msg

	// signature is the DKIM-Signature field, CRLF included, that goes in front of raw.
	signature string
	// raw is Msg as go-mail wrote it for signing; nil when the message is not signed.
	raw []byte
}

// Signed reports whether the message carries a DKIM signature.
func (c Composed) Signed() bool { return c.raw != nil }

// WriteTo writes the message as a relay sends it: the DKIM-Signature field followed by the bytes
// it signs, or, unsigned, the message written by go-mail.
func (c Composed) WriteTo(w io.Writer) (int64, error) {
	if c.raw == nil {
		return c.Msg.WriteTo(w)
	}
	n, err := io.WriteString(w, c.signature)
	if err != nil {
		return int64(n), err
	}
	m, err := w.Write(c.raw)
	return int64(n + m), err
}
