package smtpcapture_test

import (
	"context"
	"fmt"
	"mime"
	"net/smtp"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"herald/internal/smtpcapture"
)

// setup starts a capture server with opts and closes it when the test ends.
func setup(t *testing.T, opts smtpcapture.Options) *smtpcapture.Server {
	t.Helper()
	srv, err := smtpcapture.Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// waitCtx bounds a wait so a broken test fails instead of hanging.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawMessage builds a small RFC 5322 message with an RFC 2047 encoded subject.
func rawMessage(subject, messageID string) []byte {
	return fmt.Appendf(nil, "From: Sender <sender@example.com>\r\n"+
		"To: rcpt@example.org\r\n"+
		"Subject: %s\r\n"+
		"Message-ID: %s\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"\r\n"+
		"Hello from the test.\r\n", mime.QEncoding.Encode("utf-8", subject), messageID)
}

// sendNetSMTP sends raw with the standard library client.
func sendNetSMTP(srv *smtpcapture.Server, auth smtp.Auth, from string, to []string, raw []byte) error {
	return smtp.SendMail(srv.Addr(), auth, from, to, raw)
}

// goMailClient returns a go-mail client for srv without TLS.
func goMailClient(t *testing.T, srv *smtpcapture.Server, opts ...gomail.Option) *gomail.Client {
	t.Helper()
	opts = append([]gomail.Option{
		gomail.WithPort(srv.Port()),
		gomail.WithTLSPolicy(gomail.NoTLS),
		gomail.WithTimeout(5 * time.Second),
	}, opts...)
	c, err := gomail.NewClient("127.0.0.1", opts...)
	if err != nil {
		t.Fatalf("go-mail NewClient: %v", err)
	}
	return c
}

// goMailMsg returns a plain-text message from sender@example.com to rcpt.
func goMailMsg(t *testing.T, subject, rcpt string) *gomail.Msg {
	t.Helper()
	m := gomail.NewMsg()
	if err := m.From("sender@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := m.To(rcpt); err != nil {
		t.Fatal(err)
	}
	m.Subject(subject)
	m.SetBodyString(gomail.TypeTextPlain, "Hello from go-mail.")
	return m
}
