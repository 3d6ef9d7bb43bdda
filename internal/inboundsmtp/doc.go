// Package inboundsmtp is Herald's one inbound SMTP listener: the MX of the mail domain, which
// receives the mail sent to addresses Herald hands out (mailto unsubscribes, VERP bounce
// addresses) and nothing else.
//
// A Server holds a list of Routes. Each route decides at RCPT whether an address is one of its
// own (a validly signed token, say) and, at the end of DATA, consumes the message for the
// recipients it accepted. An address no route accepts is refused with 550 5.1.1, so the server
// is neither an open relay nor a sink for spam. A message with recipients of several routes is
// read once and handed to each of them.
//
// The server owns what the routes share: one go-smtp server with its limits (recipients per
// message, read and write timeouts, the time a route may spend on a message), the size cap (the
// server takes messages up to the largest route's cap, each route refuses what exceeds its own
// with 552 5.3.4), STARTTLS, go-smtp's error log routed to slog, and Serve/Close: Close stops
// every listener, closes the connections, cancels the routes' work in flight and waits for it
// to return, so nothing of a route runs after Close.
package inboundsmtp
