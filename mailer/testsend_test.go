package mailer_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"herald/consent"
	"herald/internal/apitest"
	"herald/internal/contacts"
	"herald/internal/workspace"
	"herald/mailer"
	"herald/templates"
)

// testSendBundle is the mailer harness plus the template API wired to a real TemplateTestSender.
type testSendBundle struct {
	*bundle
	tpl    *httptest.Server
	keyCW  string // workspace "a", campaigns:write
	keyCWB string // workspace "b", campaigns:write
}

func setupTestSend(t *testing.T) *testSendBundle {
	t.Helper()
	b := &testSendBundle{bundle: setup(t, setupOpts{})}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := &templates.Handler{DB: b.pool, Logger: logger, BaseURL: testBaseURL + "/",
		TestSender: &mailer.TemplateTestSender{DB: b.pool, River: b.river, MaxAttempts: 3, MessageIDDomain: "herald.test"}}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(b.pool, logger))
		h.Routes(r)
	})
	b.tpl = httptest.NewServer(r)
	t.Cleanup(b.tpl.Close)
	b.keyCW, _ = newKey(t, b.pool, "a", workspace.ScopeCampaignsWrite)
	var wsB int64
	b.keyCWB, wsB = newKey(t, b.pool, "b", workspace.ScopeCampaignsWrite)
	ctx := context.Background()
	for _, ws := range []int64{b.wsA, wsB} {
		_, err := templates.Create(ctx, b.pool, ws, templates.Input{Name: "news",
			Subject: "News for {{.contact.first_name}} {{.tag}}",
			HTML: `<p>Hi {{.contact.first_name}} ({{.contact.attributes.plan}}), {{.note}}</p>` +
				`<a href="{{unsubscribe_url}}">Unsubscribe</a> <a href="{{view_online_url}}">View online</a><p>{{postal_address}}</p>`})
		if err != nil {
			t.Fatal(err)
		}
	}
	// plain breaks the marketing rule: no unsubscribe link, no postal address.
	if _, err := templates.Create(ctx, b.pool, b.wsA, templates.Input{Name: "plain", Subject: "Plain", HTML: "<p>Hi</p>"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := contacts.Upsert(ctx, b.pool, b.wsA, contacts.Input{ExternalID: "crm-1", Email: "ada@example.com",
		Name: "Ada Lovelace", Attributes: map[string]any{"plan": `<b onmouseover="x()">Pro</b>`}}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *testSendBundle) test(t *testing.T, key, name, body string) apitest.Response {
	t.Helper()
	return apitest.Do(t, b.tpl, apitest.Request{Method: "POST", Path: "/v1/templates/" + name + "/test", Key: key,
		ContentType: "application/json", Body: strings.NewReader(body)})
}

// TestTemplateTestSendEndToEnd: a test send renders the template for the contact, fills the
// preview links and the given postal address, and reaches the SMTP server once, addressed to
// "to" only, with the [Test] subject and X-Herald-Test: 1, through the transactional path.
func TestTemplateTestSendEndToEnd(t *testing.T) {
	t.Parallel()
	b := setupTestSend(t)
	ctx := context.Background()
	res := b.test(t, b.keyCW, "news", `{"to":" QA@Acme.Example ","from":"Acme News <news@acme.example>","contact":"crm-1",
		"data":{"note":"<script>alert(1)</script>","tag":"#1"},"postal_address":"Acme Ltd\n1 Main Street"}`)
	if res.Status != http.StatusAccepted {
		t.Fatalf("test send: %d %s", res.Status, res.Raw)
	}
	id, _ := res.Body["id"].(string)
	if res.Body["to"] != "QA@acme.example" || res.Body["status"] != "queued" || id == "" {
		t.Fatalf("answer = %v", res.Body)
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	msgs, err := b.smtp.WaitFor(wctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if len(m.To) != 1 || m.To[0] != "QA@acme.example" || m.From != "news@acme.example" {
		t.Fatalf("envelope: from %q to %v", m.From, m.To)
	}
	if m.Subject != "[Test] News for Ada #1" {
		t.Errorf("subject = %q", m.Subject)
	}
	if got := m.Header.Get("X-Herald-Test"); got != "1" {
		t.Errorf("X-Herald-Test = %q", got)
	}
	if got := m.Header.Get("From"); !strings.Contains(got, "Acme News") {
		t.Errorf("From = %q", got)
	}
	if m.Header.Get("List-Unsubscribe") != "" || m.Header.Get("X-Herald-Stream") != "transactional" {
		t.Errorf("a test send is transactional: List-Unsubscribe %q, stream %q", m.Header.Get("List-Unsubscribe"),
			m.Header.Get("X-Herald-Stream"))
	}
	parts := bodyParts(t, m.Raw)
	html, text := parts["text/html"], strings.ReplaceAll(parts["text/plain"], "\r\n", "\n")
	for _, want := range []string{`href="https://herald.test/u/preview"`, `href="https://herald.test/v/preview"`,
		"<p>Acme Ltd<br>1 Main Street</p>", "Hi Ada (&lt;b onmouseover=&#34;x()&#34;&gt;Pro&lt;/b&gt;), &lt;script&gt;alert(1)&lt;/script&gt;"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q:\n%s", want, html)
		}
	}
	for _, want := range []string{"Unsubscribe <https://herald.test/u/preview>", "Acme Ltd\n1 Main Street"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(m.Raw), "herald.invalid") || strings.Contains(string(m.Raw), "ada@example.com") {
		t.Errorf("the message holds a placeholder or the contact's own address:\n%s", m.Raw)
	}
	b.waitStatus(t, b.keyA, id, mailer.StatusSent)
	stored, err := mailer.MessageGet(ctx, b.pool, b.wsA, id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Stream != mailer.StreamTransactional || stored.ContactID != nil || stored.Headers["X-Herald-Test"] != "1" ||
		stored.MessageID != id+"@herald.test" {
		t.Errorf("stored message = %+v", stored)
	}
	// A second test is a second message: test sends have no idempotency key.
	res = b.test(t, b.keyCW, "news", `{"to":"qa@acme.example","from":"news@acme.example","data":{"note":"","tag":"","contact":{"first_name":"Bo","attributes":{"plan":"x"}}}}`)
	if res.Status != http.StatusAccepted || res.Body["id"] == id {
		t.Fatalf("second test send: %d %v", res.Status, res.Body)
	}
	if msgs, err = b.smtp.WaitFor(wctx, 2); err != nil {
		t.Fatal(err)
	}
	if msgs[1].Subject != "[Test] News for Bo" || !strings.Contains(bodyParts(t, msgs[1].Raw)["text/html"], "Postal address of the sender") {
		t.Errorf("second test: subject %q\n%s", msgs[1].Subject, msgs[1].Raw)
	}
}

// TestTemplateTestSendSuppressed: the transactional decision still refuses a hard-bounced address.
func TestTemplateTestSendSuppressed(t *testing.T) {
	t.Parallel()
	b := setupTestSend(t)
	ctx := context.Background()
	if _, err := b.consent.Suppress(ctx, b.pool, consent.Suppression{WorkspaceID: b.wsA, Address: "bounced@acme.example",
		Reason: consent.ReasonHardBounce, Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	res := b.test(t, b.keyCW, "news", `{"to":"bounced@acme.example","from":"news@acme.example","contact":"crm-1","data":{"note":"","tag":""}}`)
	if res.Status != http.StatusAccepted {
		t.Fatalf("test send: %d %s", res.Status, res.Raw)
	}
	got := b.waitStatus(t, b.keyA, res.Body["id"].(string), mailer.StatusSuppressed)
	if got.Body["status_reason"] != consent.ReasonHardBounce {
		t.Errorf("status_reason = %v", got.Body["status_reason"])
	}
	if n := b.smtp.Count(); n != 0 {
		t.Errorf("%d messages reached SMTP", n)
	}
}

// TestTemplateTestSendHostile: every bad request is a clear 4xx and stores no message.
func TestTemplateTestSendHostile(t *testing.T) {
	t.Parallel()
	b := setupTestSend(t)
	ok := `"from":"news@acme.example","data":{"note":"","tag":""}`
	for _, tc := range []struct {
		name, key, tpl, body string
		status               int
		field                string
	}{
		{"CRLF in to", b.keyCW, "news", `{"to":"qa@acme.example\r\nBcc: v@evil.example","contact":"crm-1",` + ok + `}`, 422, "to"},
		{"display name in to", b.keyCW, "news", `{"to":"QA <qa@acme.example>","contact":"crm-1",` + ok + `}`, 422, "to"},
		{"missing to", b.keyCW, "news", `{"contact":"crm-1",` + ok + `}`, 422, "to"},
		{"CRLF in from", b.keyCW, "news", `{"to":"qa@acme.example","from":"news@acme.example\r\nBcc: v@evil.example","contact":"crm-1","data":{"note":"","tag":""}}`, 422, "from"},
		{"CRLF in from name", b.keyCW, "news", `{"to":"qa@acme.example","from":"News\r\nBcc: v@evil.example <news@acme.example>","contact":"crm-1","data":{"note":"","tag":""}}`, 422, "from"},
		{"missing from", b.keyCW, "news", `{"to":"qa@acme.example","contact":"crm-1","data":{"note":"","tag":""}}`, 422, "from"},
		{"CRLF in subject data", b.keyCW, "news", `{"to":"qa@acme.example","contact":"crm-1","from":"news@acme.example","data":{"note":"","tag":"x\r\nBcc: v@evil.example"}}`, 422, "data"},
		{"unknown contact", b.keyCW, "news", `{"to":"qa@acme.example","contact":"crm-404",` + ok + `}`, 404, ""},
		{"unknown version", b.keyCW, "news", `{"to":"qa@acme.example","version":7,"contact":"crm-1",` + ok + `}`, 404, ""},
		{"unknown template", b.keyCW, "nope", `{"to":"qa@acme.example","contact":"crm-1",` + ok + `}`, 404, ""},
		{"another workspace's contact", b.keyCWB, "news", `{"to":"qa@acme.example","contact":"crm-1",` + ok + `}`, 404, ""},
		{"missing data key", b.keyCW, "news", `{"to":"qa@acme.example","contact":"crm-1","from":"news@acme.example"}`, 422, "data"},
		{"postal address with NUL", b.keyCW, "news", `{"to":"qa@acme.example","contact":"crm-1","postal_address":"a\u0000b",` + ok + `}`, 422, "postal_address"},
		{"marketing rule", b.keyCW, "plain", `{"to":"qa@acme.example","contact":"crm-1","stream":"marketing",` + ok + `}`, 422, "html"},
		{"unknown field", b.keyCW, "news", `{"to":"qa@acme.example","bcc":"v@evil.example",` + ok + `}`, 422, "bcc"},
		{"oversized", b.keyCW, "news", `{"to":"qa@acme.example","data":{"note":"` + strings.Repeat("x", 5<<20) + `"}}`, 413, ""},
		{"messages:send key", b.keyA, "news", `{"to":"qa@acme.example","contact":"crm-1",` + ok + `}`, 403, ""},
		{"no key", "", "news", `{"to":"qa@acme.example","contact":"crm-1",` + ok + `}`, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := b.test(t, tc.key, tc.tpl, tc.body)
			res.RequireProblem(t, tc.status, tc.field)
		})
	}
	if n := b.count(t, `SELECT count(*) FROM messages`) + b.count(t, `SELECT count(*) FROM river_job`); n != 0 {
		t.Errorf("%d messages or jobs stored by refused test sends", n)
	}
}
