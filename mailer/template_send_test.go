package mailer_test

import (
	"context"
	"mime"
	"strings"
	"testing"

	"herald/internal/contacts"
	"herald/templates"
)

func TestSendToContactWithTemplate(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	if _, _, err := contacts.Upsert(ctx, b.pool, b.wsA, contacts.Input{ExternalID: "c-1", Email: "Ann@Example.COM",
		Name: "Ann Lee", Attributes: map[string]any{"plan": "pro"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := templates.Create(ctx, b.pool, b.wsA, templates.Input{Name: "welcome",
		Subject: "Welcome {{.contact.name}}",
		HTML:    `<p>Hi {{.contact.name}}, you are on {{.contact.attributes.plan}}. {{.note}}</p><a href="{{.link}}">open</a>`}); err != nil {
		t.Fatal(err)
	}
	body := `{"from":"a@acme.example","contact":"c-1","template":"welcome","data":{"note":"<script>alert(1)</script>","link":"javascript:alert(1)"}}`
	id := b.send(t, b.keyA, "k", body)
	res := b.waitStatus(t, b.keyA, id, "sent")
	if res.Body["status_reason"] != nil {
		t.Errorf("a sent message has a status_reason: %v", res.Body["status_reason"])
	}
	msgs := b.smtp.Messages()
	if len(msgs) != 1 {
		t.Fatalf("received %d messages", len(msgs))
	}
	m := msgs[0]
	if m.To[0] != "Ann@example.com" || m.Subject != "Welcome Ann Lee" {
		t.Errorf("to %v subject %q", m.To, m.Subject)
	}
	if to, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("To")); !strings.Contains(to, "Ann Lee") {
		t.Errorf("To header %q lacks the contact's name", to)
	}
	raw := string(m.Raw)
	_, htmlPart, _ := strings.Cut(raw, "Content-Type: text/html")
	if htmlPart == "" || strings.Contains(htmlPart, "<script") || strings.Contains(htmlPart, "javascript:") {
		t.Errorf("data was not escaped in the HTML part:\n%s", raw)
	}
	if !strings.Contains(raw, "text/plain") || !strings.Contains(raw, "you are on pro") {
		t.Errorf("no generated text part with the contact's attribute:\n%s", raw)
	}
	var contactID *int64
	if err := b.pool.QueryRow(ctx, "SELECT contact_id FROM messages WHERE id = $1", id).Scan(&contactID); err != nil || contactID == nil {
		t.Errorf("message not linked to its contact: %v %v", contactID, err)
	}

	// Workspace b can use neither a's contact nor a's template.
	for field, body := range map[string]string{
		"contact":  `{"from":"b@b.example","contact":"c-1","subject":"s","text":"t"}`,
		"template": `{"from":"b@b.example","to":"x@example.com","template":"welcome"}`,
	} {
		res := b.do(t, "POST", "/v1/messages", b.keyB, "k-"+field, body)
		if res.Status != 422 || res.Body["field"] != field {
			t.Errorf("b using a's %s: %d %s", field, res.Status, res.Raw)
		}
	}
	// A template whose data lacks a field fails loudly, naming it, and nothing is queued.
	res = b.do(t, "POST", "/v1/messages", b.keyA, "k2", `{"from":"a@acme.example","to":"x@example.com","template":"welcome","data":{}}`)
	if res.Status != 422 || res.Body["field"] != "data" {
		t.Errorf("missing template data: %d %s", res.Status, res.Raw)
	}
	if n := b.count(t, "SELECT count(*) FROM messages"); n != 1 {
		t.Errorf("messages = %d", n)
	}
}
