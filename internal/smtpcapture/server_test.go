package smtpcapture_test

import (
	"context"
	"errors"
	"fmt"
	"net/smtp"
	"slices"
	"testing"
	"time"

	"herald/internal/smtpcapture"
)

func TestAcceptNetSMTP(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{})

	raw := rawMessage("Grüße aus Köln ✓", "<m1@herald.test>")
	to := []string{"rcpt@example.org", "cc@example.net"}
	if err := sendNetSMTP(srv, nil, "bounce@example.com", to, raw); err != nil {
		t.Fatalf("send: %v", err)
	}

	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if m.ID != 1 || m.From != "bounce@example.com" || !slices.Equal(m.To, to) {
		t.Errorf("envelope: id %d from %q to %q", m.ID, m.From, m.To)
	}
	if m.Subject != "Grüße aus Köln ✓" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if m.MessageID != "<m1@herald.test>" {
		t.Errorf("MessageID = %q", m.MessageID)
	}
	if m.Header == nil || m.Header.Get("From") != "Sender <sender@example.com>" {
		t.Errorf("Header From = %q", m.Header.Get("From"))
	}
	if string(m.Raw) != string(raw) || m.Size() != len(raw) {
		t.Errorf("Raw differs:\n%q\nwant\n%q", m.Raw, raw)
	}
	if m.ReceivedAt.IsZero() || time.Since(m.ReceivedAt) > time.Minute {
		t.Errorf("ReceivedAt = %v", m.ReceivedAt)
	}
	if srv.Count() != 1 || srv.Attempts() != 1 {
		t.Errorf("Count %d Attempts %d, want 1 1", srv.Count(), srv.Attempts())
	}
}

func TestAcceptGoMail(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{})

	msg := goMailMsg(t, "Bestätigung: Ihre Bestellung №42", "rcpt@example.org")
	msg.SetMessageIDWithValue("order-42@herald.test")
	if err := goMailClient(t, srv).DialAndSend(msg); err != nil {
		t.Fatalf("DialAndSend: %v", err)
	}

	msgs, err := srv.WaitFor(waitCtx(t), 1)
	if err != nil {
		t.Fatalf("WaitFor: %v", err)
	}
	m := msgs[0]
	if m.Subject != "Bestätigung: Ihre Bestellung №42" {
		t.Errorf("Subject = %q", m.Subject)
	}
	if m.MessageID != "<order-42@herald.test>" {
		t.Errorf("MessageID = %q", m.MessageID)
	}
	if m.From != "sender@example.com" || !slices.Equal(m.To, []string{"rcpt@example.org"}) {
		t.Errorf("envelope from %q to %q", m.From, m.To)
	}
	if got := m.Header.Get("Content-Type"); got == "" {
		t.Error("no Content-Type header")
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()

	t.Run("BlocksUntilEnough", func(t *testing.T) {
		t.Parallel()
		srv := setup(t, smtpcapture.Options{})
		type result struct {
			msgs []smtpcapture.Message
			err  error
		}
		done := make(chan result, 1)
		go func() {
			msgs, err := srv.WaitFor(waitCtx(t), 3)
			done <- result{msgs, err}
		}()
		for i := range 3 {
			select {
			case r := <-done:
				t.Fatalf("WaitFor returned after %d messages: %v", i, r.err)
			default:
			}
			raw := rawMessage(fmt.Sprintf("n%d", i), fmt.Sprintf("<%d@t>", i))
			if err := sendNetSMTP(srv, nil, "a@example.com", []string{"b@example.com"}, raw); err != nil {
				t.Fatal(err)
			}
		}
		r := <-done
		if r.err != nil || len(r.msgs) != 3 || r.msgs[0].Subject != "n0" || r.msgs[2].Subject != "n2" {
			t.Fatalf("WaitFor = %d messages, %v", len(r.msgs), r.err)
		}
	})

	t.Run("ContextEnds", func(t *testing.T) {
		t.Parallel()
		srv := setup(t, smtpcapture.Options{})
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		msgs, err := srv.WaitFor(ctx, 1)
		if !errors.Is(err, context.DeadlineExceeded) || len(msgs) != 0 {
			t.Fatalf("WaitFor = %d messages, %v; want deadline exceeded", len(msgs), err)
		}
	})

	t.Run("ServerCloses", func(t *testing.T) {
		t.Parallel()
		srv := setup(t, smtpcapture.Options{})
		time.AfterFunc(20*time.Millisecond, func() { _ = srv.Close() })
		if _, err := srv.WaitFor(waitCtx(t), 1); !errors.Is(err, smtpcapture.ErrClosed) {
			t.Fatalf("WaitFor after Close: %v, want ErrClosed", err)
		}
	})

	t.Run("CountsSinceReset", func(t *testing.T) {
		t.Parallel()
		srv := setup(t, smtpcapture.Options{})
		send := func(subject string) {
			t.Helper()
			if err := sendNetSMTP(srv, nil, "a@example.com", []string{"b@example.com"}, rawMessage(subject, "<x@t>")); err != nil {
				t.Fatal(err)
			}
		}
		send("before")
		srv.Reset()
		if got := srv.Messages(); len(got) != 0 {
			t.Fatalf("after Reset: %d messages", len(got))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		if _, err := srv.WaitFor(ctx, 1); err == nil {
			t.Fatal("WaitFor(1) right after Reset returned without a new message")
		}
		send("after")
		msgs, err := srv.WaitFor(waitCtx(t), 1)
		if err != nil || len(msgs) != 1 || msgs[0].Subject != "after" || msgs[0].ID != 2 {
			t.Fatalf("WaitFor = %+v, %v", msgs, err)
		}
		if srv.Count() != 2 {
			t.Errorf("Count = %d, want 2 (lifetime)", srv.Count())
		}
	})
}

// sendMany sends n messages over one connection with the standard library's low-level client.
func sendMany(t *testing.T, srv *smtpcapture.Server, n int) {
	t.Helper()
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 1; i <= n; i++ {
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
		if _, err := w.Write(rawMessage(fmt.Sprintf("n%d", i), fmt.Sprintf("<%d@t>", i))); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestKeepRingBuffer(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{Keep: 3})
	sendMany(t, srv, 5)

	msgs := srv.Messages()
	var ids []int64
	for _, m := range msgs {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []int64{3, 4, 5}) || msgs[0].Subject != "n3" {
		t.Fatalf("kept IDs %v, want [3 4 5] oldest first", ids)
	}
	if srv.Count() != 5 || srv.Attempts() != 5 {
		t.Errorf("Count %d Attempts %d, want 5 5", srv.Count(), srv.Attempts())
	}
	if got, err := srv.WaitFor(waitCtx(t), 5); err != nil || len(got) != 3 {
		t.Errorf("WaitFor(5) = %d messages, %v; want the 3 kept", len(got), err)
	}
}

func TestKeepCountOnly(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{Keep: -1})
	sendMany(t, srv, 4)

	if got, err := srv.WaitFor(waitCtx(t), 4); err != nil || len(got) != 0 {
		t.Fatalf("WaitFor = %d messages, %v; want none kept, no error", len(got), err)
	}
	if srv.Count() != 4 || len(srv.Messages()) != 0 {
		t.Errorf("Count %d, kept %d; want 4, 0", srv.Count(), len(srv.Messages()))
	}
}

func TestCloseWithIdleClient(t *testing.T) {
	t.Parallel()
	srv, err := smtpcapture.Start(smtpcapture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with an idle client", d)
	}
	if err := c.Noop(); err == nil {
		t.Error("idle client still talks to a closed server")
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := smtp.Dial(srv.Addr()); err == nil {
		t.Error("closed server still accepts connections")
	}
}

func TestAddrAndPort(t *testing.T) {
	t.Parallel()
	srv := setup(t, smtpcapture.Options{})
	if srv.Port() == 0 || srv.Addr() != fmt.Sprintf("127.0.0.1:%d", srv.Port()) {
		t.Fatalf("Addr %q Port %d", srv.Addr(), srv.Port())
	}
	if _, err := smtpcapture.Start(smtpcapture.Options{Addr: srv.Addr()}); err == nil {
		t.Fatal("Start on a taken address succeeded")
	}
}
