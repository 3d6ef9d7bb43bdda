package mailer_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"herald/internal/config"
	"herald/internal/smtpcapture"
	"herald/mailer"
)

// TestRelayPipelinedMatchesStepwise sends the same messages through the pipelined transaction
// (MAIL, RCPT and BDAT LAST in one write) and through go-mail's command-by-command one: the
// relay must receive the same envelope and the same bytes, whatever the content's line endings
// and leading dots, and refusals must read the same.
func TestRelayPipelinedMatchesStepwise(t *testing.T) {
	t.Parallel()
	refuse := func(rcpt string) error {
		if strings.HasPrefix(rcpt, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	}
	busy := func(m *smtpcapture.Message) error {
		if m.Subject == "busy" {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
		return nil
	}
	srv, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0", RcptHook: refuse, DataHook: busy})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, _ := config.ParseSMTPURL(fmtPort("smtp://127.0.0.1:%d?tls=none", srv.Port()))
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	relay := func(noPipelining bool) *mailer.Relay {
		r, err := mailer.NewRelay(mailer.RelayOptions{SMTP: cfg, HELO: "test.local", Timeout: 5 * time.Second,
			Size: 1, Logger: quiet, NoPipelining: noPipelining})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	pipelined, stepwise := relay(false), relay(true)

	for _, tc := range []struct {
		name       string
		to, cc     string
		returnPath string
		subject    string
		text, html string
		eightBit   bool
		code       int // 250: accepted
		enhanced   string
	}{
		{name: "plain text with bare LF, leading dots and no final newline", to: "x@example.com", subject: "dots",
			text: "first\n.second starts with a dot\n..two dots\r\n.\nlast", code: 250},
		{name: "alternative parts, UTF-8 and a return path", to: "ünï@example.com", returnPath: "b+42@bounce.example",
			subject: "Grüße", text: "hello\n", html: "<p>hello</p>\n<p>.dot</p>", code: 250},
		{name: "8bit text with bare LF and a dot line", to: "x@example.com", subject: "8bit", eightBit: true,
			text: "one\n.\n.two\nthree\r", code: 250},
		{name: "empty text", to: "x@example.com", subject: "empty", text: "", code: 250},
		{name: "refused recipient", to: "gone@example.com", subject: "gone", text: "t", code: 550, enhanced: "5.1.1"},
		{name: "refused content", to: "x@example.com", subject: "busy", text: "t", code: 451, enhanced: "4.3.0"},
		{name: "two recipients, one refused: sent to none", to: "x@example.com", cc: "gone@example.com",
			subject: "two", text: "t", code: 550, enhanced: "5.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]*smtpcapture.Message
			var results [2]mailer.SendResult
			for i, r := range []*mailer.Relay{pipelined, stepwise} {
				opts := []gomail.MsgOption{gomail.WithNoDefaultUserAgent()}
				if tc.eightBit {
					opts = append(opts, gomail.WithEncoding(gomail.NoEncoding))
				}
				m := gomail.NewMsg(opts...)
				if err := m.From("Acme <a@acme.example>"); err != nil {
					t.Fatal(err)
				}
				if err := m.To(tc.to); err != nil {
					t.Fatal(err)
				}
				if tc.cc != "" {
					if err := m.Cc(tc.cc); err != nil {
						t.Fatal(err)
					}
				}
				if tc.returnPath != "" {
					if err := m.EnvelopeFrom(tc.returnPath); err != nil {
						t.Fatal(err)
					}
				}
				m.Subject(tc.subject)
				m.SetMessageIDWithValue("fixed@acme.example")
				m.SetBoundary("fixed-boundary")
				m.SetDateWithValue(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
				m.SetBodyString(gomail.TypeTextPlain, tc.text)
				if tc.html != "" {
					m.AddAlternativeString(gomail.TypeTextHTML, tc.html)
				}
				before := srv.Count()
				res, err := r.Send(context.Background(), mailer.Composed{Msg: m})
				results[i] = res
				if res.Code != tc.code || res.Enhanced != tc.enhanced || (err == nil) != (tc.code == 250) {
					t.Fatalf("relay %d: %+v, %v; want code %d %q", i, res, err, tc.code, tc.enhanced)
				}
				if tc.code != 250 {
					if srv.Count() != before {
						t.Fatalf("relay %d: a refused message reached the server", i)
					}
					continue
				}
				msgs := srv.Messages()
				got[i] = &msgs[len(msgs)-1]
			}
			if results[0].Temporary != results[1].Temporary {
				t.Errorf("temporary: pipelined %v, stepwise %v", results[0].Temporary, results[1].Temporary)
			}
			if tc.code != 250 {
				return
			}
			p, s := got[0], got[1]
			if p.From != s.From || strings.Join(p.To, ",") != strings.Join(s.To, ",") {
				t.Errorf("envelope: pipelined %s -> %v, stepwise %s -> %v", p.From, p.To, s.From, s.To)
			}
			if tc.returnPath != "" && p.From != tc.returnPath {
				t.Errorf("envelope sender %q, want %q", p.From, tc.returnPath)
			}
			if !bytes.Equal(p.Raw, s.Raw) {
				t.Errorf("content differs:\npipelined %q\nstepwise  %q", p.Raw, s.Raw)
			}
		})
	}
	// Refusals left both connections usable: one more message goes through each.
	for i, r := range []*mailer.Relay{pipelined, stepwise} {
		if res, err := r.Send(context.Background(), testMsg(t)); err != nil {
			t.Errorf("relay %d after refusals: %+v %v", i, res, err)
		}
	}
}
