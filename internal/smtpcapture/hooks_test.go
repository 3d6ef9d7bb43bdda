package smtpcapture_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"herald/internal/smtpcapture"
)

func TestDataHookRefusal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		reply    *gosmtp.SMTPError
		wantTemp bool
		wantCode int
		wantESC  string
	}{
		{"Temporary", &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Try again later"},
			true, 451, "4.3.0"},
		{"Permanent", &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "No such user"},
			false, 550, "5.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen atomic.Pointer[smtpcapture.Message]
			srv := setup(t, smtpcapture.Options{DataHook: func(m *smtpcapture.Message) error {
				seen.Store(m)
				return tt.reply
			}})

			err := goMailClient(t, srv).DialAndSend(goMailMsg(t, "refused", "rcpt@example.org"))
			var sendErr *gomail.SendError
			if !errors.As(err, &sendErr) {
				t.Fatalf("err = %v (%T), want *mail.SendError", err, err)
			}
			if sendErr.IsTemp() != tt.wantTemp || sendErr.ErrorCode() != tt.wantCode ||
				sendErr.EnhancedStatusCode() != tt.wantESC {
				t.Errorf("temp %v code %d esc %q; want %v %d %q", sendErr.IsTemp(), sendErr.ErrorCode(),
					sendErr.EnhancedStatusCode(), tt.wantTemp, tt.wantCode, tt.wantESC)
			}
			if m := seen.Load(); m == nil || m.Subject != "refused" || m.ID != 0 {
				t.Errorf("hook saw %+v, want the parsed message without an ID", m)
			}
			if srv.Count() != 0 || srv.Attempts() != 1 || len(srv.Messages()) != 0 {
				t.Errorf("Count %d Attempts %d kept %d; want 0 1 0", srv.Count(), srv.Attempts(), len(srv.Messages()))
			}
		})
	}
}

func TestRcptHook(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{RcptHook: func(rcpt string) error {
		if strings.HasPrefix(rcpt, "gone@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "Mailbox unavailable"}
		}
		return nil
	}})

	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("ok@example.org"); err != nil {
		t.Fatalf("good recipient: %v", err)
	}
	err = c.Rcpt("gone@example.org")
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) || tpErr.Code != 550 || !strings.HasPrefix(tpErr.Msg, "5.1.1") {
		t.Fatalf("rejected recipient: %v, want 550 5.1.1", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(rawMessage("partial", "<p@t>")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	msgs, err := srv.WaitFor(waitCtx(t), 1)
	if err != nil || !slices.Equal(msgs[0].To, []string{"ok@example.org"}) {
		t.Fatalf("To = %v, %v; want only the accepted recipient", msgs, err)
	}

	// go-mail reports the rejection as a permanent RCPT TO failure.
	err = goMailClient(t, srv).DialAndSend(goMailMsg(t, "x", "gone@example.org"))
	var sendErr *gomail.SendError
	if !errors.As(err, &sendErr) || sendErr.Reason != gomail.ErrSMTPRcptTo || sendErr.IsTemp() {
		t.Fatalf("go-mail err = %v, want permanent ErrSMTPRcptTo", err)
	}
}

func TestDropConnection(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	srv := setup(t, smtpcapture.Options{DataHook: func(*smtpcapture.Message) error {
		if calls.Add(1) == 1 {
			return smtpcapture.ErrDropConnection
		}
		return nil
	}})

	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("a@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.com"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(rawMessage("dropped", "<d@t>")); err != nil {
		t.Fatal(err)
	}
	err = w.Close()
	var tpErr *textproto.Error
	if err == nil || errors.As(err, &tpErr) {
		t.Fatalf("end of DATA: %v, want a connection error rather than an SMTP reply", err)
	}
	if srv.Count() != 0 || srv.Attempts() != 1 {
		t.Errorf("Count %d Attempts %d; want 0 1", srv.Count(), srv.Attempts())
	}

	// The server keeps serving: a retry (as go-mail would) goes through.
	if err := goMailClient(t, srv).DialAndSend(goMailMsg(t, "retried", "b@example.com")); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].Subject != "retried" {
		t.Fatalf("kept %+v", msgs)
	}
}

func TestDropConnectionGoMail(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{DataHook: func(*smtpcapture.Message) error {
		return smtpcapture.ErrDropConnection
	}})
	err := goMailClient(t, srv).DialAndSend(goMailMsg(t, "dropped", "b@example.com"))
	var sendErr *gomail.SendError
	if !errors.As(err, &sendErr) || sendErr.ErrorCode() != 0 {
		t.Fatalf("err = %v, want a SendError without a server reply code", err)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{AuthUser: "herald", AuthPass: "s3cret"})
	raw := rawMessage("authed", "<a@t>")
	to := []string{"b@example.com"}

	tests := []struct {
		name     string
		auth     smtp.Auth
		wantCode int // 0 = accepted
	}{
		{"Missing", nil, 502},
		{"WrongPassword", smtp.PlainAuth("", "herald", "nope", "127.0.0.1"), 535},
		{"WrongUser", smtp.PlainAuth("", "mallory", "s3cret", "127.0.0.1"), 535},
		{"Correct", smtp.PlainAuth("", "herald", "s3cret", "127.0.0.1"), 0},
	}
	for _, tt := range tests {
		err := sendNetSMTP(srv, tt.auth, "a@example.com", to, raw)
		var tpErr *textproto.Error
		switch {
		case tt.wantCode == 0 && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantCode != 0 && (!errors.As(err, &tpErr) || tpErr.Code != tt.wantCode):
			t.Errorf("%s: %v, want code %d", tt.name, err, tt.wantCode)
		}
	}

	good := goMailClient(t, srv, gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
		gomail.WithUsername("herald"), gomail.WithPassword("s3cret"))
	if err := good.DialAndSend(goMailMsg(t, "go-mail authed", "b@example.com")); err != nil {
		t.Fatalf("go-mail with credentials: %v", err)
	}
	bad := goMailClient(t, srv, gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
		gomail.WithUsername("herald"), gomail.WithPassword("wrong"))
	if err := bad.DialAndSend(goMailMsg(t, "x", "b@example.com")); err == nil {
		t.Fatal("go-mail with a wrong password succeeded")
	}
	if srv.Count() != 2 {
		t.Errorf("Count = %d, want 2 accepted", srv.Count())
	}
}

func TestMaxMessageBytes(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{MaxMessageBytes: 1024})
	big := append(rawMessage("big", "<b@t>"), strings.Repeat(strings.Repeat("x", 70)+"\r\n", 60)...)
	err := sendNetSMTP(srv, nil, "a@example.com", []string{"b@example.com"}, big)
	var tpErr *textproto.Error
	if !errors.As(err, &tpErr) || tpErr.Code != 552 {
		t.Fatalf("oversized message: %v, want 552", err)
	}
	if srv.Count() != 0 {
		t.Errorf("Count = %d, want 0", srv.Count())
	}
}
