package mailer_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"herald/internal/config"
	"herald/internal/smtpcapture"
	"herald/mailer"
)

// noMailerFields fails the test when raw names the software that wrote it: go-mail adds
// User-Agent and X-Mailer ("go-mail vX // https://...") unless told not to.
func noMailerFields(t *testing.T, what string, raw []byte) {
	t.Helper()
	lines := headerLines(t, raw)
	for _, name := range []string{"User-Agent", "X-Mailer"} {
		if v := fieldValues(lines, name); len(v) != 0 {
			t.Errorf("%s carries %s: %q", what, name, v)
		}
	}
	if len(fieldValues(lines, "Message-ID")) != 1 || len(fieldValues(lines, "Date")) != 1 {
		t.Errorf("%s lacks its Message-ID or Date:\n%s", what, raw)
	}
}

// TestSentMessagesCarryNoUserAgent: neither a transactional message sent through the API and
// the send worker nor a campaign message composed by CampaignList.Compose and handed to a relay
// (pipelined and command by command) carries User-Agent or X-Mailer.
func TestSentMessagesCarryNoUserAgent(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, b.keyA, "ua1", mustJSON(map[string]any{
		"from": "support@acme.example", "to": "x@example.com", "subject": "Receipt", "text": "Thanks",
	}))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	noMailerFields(t, "a transactional message", msgs[0].Raw)

	srv, err := smtpcapture.Start(smtpcapture.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg, _ := config.ParseSMTPURL(fmtPort("smtp://127.0.0.1:%d?tls=none", srv.Port()))
	list := &mailer.CampaignList{BaseURL: "https://herald.example", InboundDomain: "in.herald.example", Purpose: "news",
		PurposeTitle: "Acme News", Workspace: "acme"}
	if err := list.Check(); err != nil {
		t.Fatal(err)
	}
	for i, noPipelining := range []bool{false, true} {
		relay, err := mailer.NewRelay(mailer.RelayOptions{SMTP: cfg, HELO: "test.local", Timeout: 5 * time.Second, Size: 1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NoPipelining: noPipelining})
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		id := int64(7 + i)
		msg, err := list.Compose(&mailer.Message{ID: "7", WorkspaceID: 3, Purpose: "news", ContactID: &id, To: "u7@d7.example",
			From: "news@acme.example", FromName: "Acme News", Subject: "News", Text: "Hello", HTML: "<p>Hello</p>",
			MessageID: "c1.r7@herald.example", CreatedAt: time.Now(), ReturnPath: "b+3.7.sig@bounce.herald.example"}, "tok7")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := relay.Send(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
		got, err := srv.WaitFor(waitCtx(t), i+1)
		if err != nil {
			t.Fatal(err)
		}
		m := got[i]
		noMailerFields(t, "a campaign message", m.Raw)
		if m.From != "b+3.7.sig@bounce.herald.example" || len(m.To) != 1 || m.To[0] != "u7@d7.example" {
			t.Errorf("envelope %s -> %v, want the return path and the recipient", m.From, m.To)
		}
	}
}
