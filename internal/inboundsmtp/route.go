package inboundsmtp

import (
	"context"

	"github.com/emersion/go-smtp"
)

// Route is one kind of address the server accepts and what it does with mail for it. Build one
// with NewRoute.
type Route struct {
	// Name names the route in logs ("mailto unsubscribe", "bounce").
	Name string
	// MaxMessageBytes caps a message to this route's recipients.
	MaxMessageBytes int64

	accept  func(addr string) (any, bool)
	deliver func(ctx context.Context, msg []byte, rcpts []any) error
}

// NewRoute builds a route from its two handlers. accept parses a recipient address (RCPT TO) and
// returns false for any address not the route's. deliver consumes a message (at most maxBytes,
// CRLF line ends, leading dots removed) for the recipients accept returned, in RCPT order; ctx
// ends at the server's work limit or at Close. deliver answers with nil (250), an
// *smtp.SMTPError (that reply; see NoSuchAddress and TryLater) or another error, which the
// server logs and answers 451 4.3.0, so the sender retries.
func NewRoute[R any](name string, maxBytes int64, accept func(addr string) (R, bool),
	deliver func(ctx context.Context, msg []byte, rcpts []R) error) Route {
	return Route{
		Name:            name,
		MaxMessageBytes: maxBytes,
		accept: func(addr string) (any, bool) {
			r, ok := accept(addr)
			return r, ok
		},
		deliver: func(ctx context.Context, msg []byte, rcpts []any) error {
			typed := make([]R, len(rcpts))
			for i, r := range rcpts {
				typed[i] = r.(R)
			}
			return deliver(ctx, msg, typed)
		},
	}
}

// NoSuchAddress is the reply 550 5.1.1 (no such mailbox), the server's answer to a recipient no
// route accepts; a route returns it for a recipient it finds names nothing only at DATA.
func NoSuchAddress() error {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such address"}
}

// TryLater is the reply 451 4.3.0: a temporary failure, the sender keeps the message and retries.
func TryLater() error {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary failure, try again later"}
}
