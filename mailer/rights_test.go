package mailer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/mailer"
)

// TestSendRightsAttachment queues an email with a JSON attachment through RightsMailer and reads
// it back from the capture SMTP server: the attachment arrives whole, named and typed, next to
// the text; the same idempotency key again queues nothing; hostile names and types are refused.
func TestSendRightsAttachment(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	rm := &mailer.RightsMailer{River: b.river, MaxAttempts: 3, MessageIDDomain: "herald.test"}
	data := []byte(`{"schema":"herald.contact-export/1","contact":{"email":"ada@example.com"}}` + "\n" + strings.Repeat("x", 3000))
	e := consent.RightsEmail{WorkspaceID: b.wsA, IdempotencyKey: "export:1", From: "privacy@acme.test", To: "ada@example.com",
		ToName: "Ada", Subject: "A copy of your data", Text: "Attached.",
		Attachments: []consent.Attachment{{Filename: "herald-export-1.json", ContentType: "application/json", Data: data}}}
	var id, again string
	for _, dst := range []*string{&id, &again} {
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			*dst, err = rm.SendRights(ctx, tx, e)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if id != again || b.count(t, `SELECT count(*) FROM messages`) != 1 || b.count(t, `SELECT count(*) FROM message_attachments`) != 1 {
		t.Fatalf("idempotency: %s vs %s", id, again)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msgs, err := b.smtp.WaitFor(wctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("content type %q %v", mt, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var found, text bool
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(part)
		if part.FileName() == "herald-export-1.json" {
			found = true
			if ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); ct != "application/json" {
				t.Errorf("attachment type %q", ct)
			}
			// multipart.Part decodes quoted-printable only; go-mail sends attachments in base64.
			if !bytes.Equal(decodeBase64(t, body), data) {
				t.Errorf("attachment content differs")
			}
		} else if strings.Contains(string(body), "Attached.") {
			text = true
		}
	}
	if !found || !text {
		t.Fatalf("attachment %v, text %v in\n%s", found, text, msgs[0].Raw)
	}

	for _, a := range []consent.Attachment{
		{Filename: "../etc/passwd", ContentType: "application/json"},
		{Filename: "a.json\r\nBcc: x@evil.test", ContentType: "application/json"},
		{Filename: "a.json", ContentType: "application/json\r\nX-Evil: 1"},
		{Filename: "a.json", ContentType: "application/json", Data: make([]byte, 10<<20+1)},
	} {
		e := e
		e.IdempotencyKey, e.Attachments = "export:hostile", []consent.Attachment{a}
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { _, err := rm.SendRights(ctx, tx, e); return err })
		if err == nil {
			t.Errorf("attachment %q %q accepted", a.Filename, a.ContentType)
		}
	}
}

func decodeBase64(t *testing.T, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(b, []byte("\r\n"), nil))))
	if err != nil {
		t.Fatalf("attachment is not base64: %v", err)
	}
	return out
}
