package templates_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"herald/internal/contacts"
	"herald/internal/dbtest"
	"herald/internal/workspace"
	"herald/templates"
)

// campaignBundle serves the template API with a BaseURL and no TestSender, with templates and a
// contact in workspace A, and the same template name in workspace B.
type campaignBundle struct {
	httpBundle
}

const (
	marketingHTML = `<p>Hi {{.contact.first_name}}, {{.note}}</p><p>Plan: {{.contact.attributes.plan}}</p>` +
		`<a href="{{unsubscribe_url}}">Unsubscribe</a> <a href="{{preferences_url}}">Preferences</a>` +
		`<a href="{{view_online_url}}">View online</a><p>{{postal_address}}</p>`
	campaignBase = "https://herald.example"
)

func setupCampaign(t *testing.T, maxBody int64) campaignBundle {
	t.Helper()
	ctx := context.Background()
	pool := dbtest.NewPool(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	key := func(ws, scope string) (string, int64) {
		w, err := workspace.Ensure(ctx, pool, ws)
		if err != nil {
			t.Fatal(err)
		}
		k, err := workspace.CreateKey(ctx, pool, w.ID, []string{scope})
		if err != nil {
			t.Fatal(err)
		}
		return k, w.ID
	}
	var b campaignBundle
	var wsA, wsB int64
	b.keyA, wsA = key("acme", workspace.ScopeCampaignsWrite)
	b.keyB, wsB = key("bravo", workspace.ScopeCampaignsWrite)
	b.keyCon, _ = key("acme", workspace.ScopeContactsWrite)
	for _, in := range []struct {
		ws int64
		templates.Input
	}{
		{wsA, templates.Input{Name: "news", Subject: "News for {{.contact.first_name}}", HTML: marketingHTML}},
		{wsA, templates.Input{Name: "plain", Subject: "Plain", HTML: "<p>Hi {{.contact.name}}</p>"}},
		{wsA, templates.Input{Name: "textonly", Subject: "T", HTML: marketingHTML, Text: "Hi\n{{unsubscribe_url}}"}},
		{wsB, templates.Input{Name: "news", Subject: "B", HTML: marketingHTML}},
	} {
		if _, err := templates.Create(ctx, pool, in.ws, in.Input); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := contacts.Upsert(ctx, pool, wsA, contacts.Input{ExternalID: "crm-1", Email: "ada@example.com",
		Name: "Ada Lovelace", Locale: "en-GB", Attributes: map[string]any{"plan": `<script>alert(1)</script>Pro`}}); err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Route("/v1", func(r chi.Router) {
		r.Use(workspace.Auth(pool, logger))
		(&templates.Handler{DB: pool, Logger: logger, MaxBodyBytes: maxBody, BaseURL: campaignBase + "/"}).Routes(r)
	})
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

func TestHTTPPreviewForContact(t *testing.T) {
	t.Parallel()
	b := setupCampaign(t, 0)
	r := b.do(t, "POST", "/v1/templates/news/preview", b.keyA, `{"contact":"crm-1","data":{"note":"<b>hello</b>"}}`)
	expect(t, "preview for a contact", r, http.StatusOK, "")
	html, _ := r.Body["html"].(string)
	if r.Body["subject"] != "News for Ada" {
		t.Errorf("subject = %v", r.Body["subject"])
	}
	for _, want := range []string{"Hi Ada, &lt;b&gt;hello&lt;/b&gt;", "Plan: &lt;script&gt;alert(1)&lt;/script&gt;Pro",
		`href="` + templates.PlaceholderUnsubscribe + `"`, templates.PlaceholderPostalAddress} {
		if !strings.Contains(html, want) {
			t.Errorf("html lacks %q: %s", want, html)
		}
	}

	// stream marketing: the rule is checked and the links are filled with preview values.
	r = b.do(t, "POST", "/v1/templates/news/preview", b.keyA,
		`{"contact":"crm-1","stream":"marketing","data":{"note":""},"postal_address":"Acme <Ltd>\r\n1 Main St"}`)
	expect(t, "marketing preview", r, http.StatusOK, "")
	html, text := r.Body["html"].(string), r.Body["text"].(string)
	for _, want := range []string{`<a href="https://herald.example/u/preview">Unsubscribe</a>`,
		`<a href="https://herald.example/u/preview">Preferences</a>`, `<a href="https://herald.example/v/preview">View online</a>`,
		"<p>Acme &lt;Ltd&gt;<br>1 Main St</p>"} {
		if !strings.Contains(html, want) {
			t.Errorf("html lacks %q: %s", want, html)
		}
	}
	if !strings.Contains(text, "Unsubscribe <https://herald.example/u/preview>") || !strings.Contains(text, "Acme <Ltd>\n1 Main St") ||
		strings.Contains(html+text, "herald.invalid") || strings.Contains(html+text, "[[herald") {
		t.Errorf("text = %q", text)
	}
	r = b.do(t, "POST", "/v1/templates/news/preview", b.keyA, `{"contact":"crm-1","stream":"marketing","data":{"note":""}}`)
	expect(t, "marketing preview, default address", r, http.StatusOK, "")
	if !strings.Contains(r.Body["html"].(string), "<p>Postal address of the sender</p>") {
		t.Errorf("html = %v", r.Body["html"])
	}

	// The contact's fields come through .contact; data may give .contact itself when no contact is named.
	r = b.do(t, "POST", "/v1/templates/news/preview", b.keyA, `{"data":{"note":"","contact":{"first_name":"Bo","attributes":{"plan":"x"}}}}`)
	expect(t, "data.contact", r, http.StatusOK, "")
	if r.Body["subject"] != "News for Bo" {
		t.Errorf("subject = %v", r.Body["subject"])
	}
}

func TestHTTPPreviewMarketingRule(t *testing.T) {
	t.Parallel()
	b := setupCampaign(t, 0)
	r := b.do(t, "POST", "/v1/templates/plain/preview", b.keyA, `{"contact":"crm-1","stream":"marketing"}`)
	expect(t, "marketing preview of a template without links", r, http.StatusUnprocessableEntity, "html")
	if d, _ := r.Body["detail"].(string); !strings.Contains(d, "unsubscribe link") || !strings.Contains(d, "postal address") {
		t.Errorf("detail = %q", d)
	}
	r = b.do(t, "POST", "/v1/templates/textonly/preview", b.keyA, `{"contact":"crm-1","stream":"marketing","data":{"note":""}}`)
	expect(t, "marketing preview, text part lacking the address", r, http.StatusUnprocessableEntity, "text")
	if d, _ := r.Body["detail"].(string); !strings.Contains(d, "postal address") || strings.Contains(d, "unsubscribe link") {
		t.Errorf("detail = %q", d)
	}
	// The same template previews as transactional.
	expect(t, "transactional preview", b.do(t, "POST", "/v1/templates/plain/preview", b.keyA, `{"contact":"crm-1"}`), http.StatusOK, "")
}

func TestHTTPPreviewCampaignHostile(t *testing.T) {
	t.Parallel()
	b := setupCampaign(t, 64<<10)
	for _, tc := range []struct {
		name, key, tpl, body string
		status               int
		field                string
	}{
		{"unknown contact", b.keyA, "news", `{"contact":"crm-404","data":{"note":""}}`, 404, ""},
		{"another workspace's contact", b.keyB, "news", `{"contact":"crm-1","data":{"note":""}}`, 404, ""},
		{"unknown version", b.keyA, "news", `{"version":9,"contact":"crm-1"}`, 404, ""},
		{"contact and data.contact", b.keyA, "news", `{"contact":"crm-1","data":{"note":"","contact":{}}}`, 422, "data"},
		{"contact not a string", b.keyA, "news", `{"contact":1}`, 422, "contact"},
		{"unknown stream", b.keyA, "news", `{"contact":"crm-1","stream":"bulk"}`, 422, "stream"},
		{"postal address with a control character", b.keyA, "news", `{"stream":"marketing","postal_address":"a\u001bb"}`, 422, "postal_address"},
		{"postal address too long", b.keyA, "news", `{"stream":"marketing","postal_address":"` + strings.Repeat("a", 1001) + `"}`, 422, "postal_address"},
		{"CRLF in subject data", b.keyA, "news", `{"data":{"note":"","contact":{"first_name":"x\r\nBcc: v@evil.example","attributes":{"plan":""}}}}`, 422, "data"},
		{"missing key", b.keyA, "news", `{"contact":"crm-1"}`, 422, "data"},
		{"oversized", b.keyA, "news", `{"data":{"note":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, ""},
		{"contacts:write key", b.keyCon, "news", `{"contact":"crm-1"}`, 403, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, tc.name, b.do(t, "POST", "/v1/templates/"+tc.tpl+"/preview", tc.key, tc.body), tc.status, tc.field)
		})
	}
}

// TestHTTPTestSendNotConfigured: without a TestSender the route answers 501 (after
// authentication and the scope check); the end-to-end test is in mailer/testsend_test.go.
func TestHTTPTestSendNotConfigured(t *testing.T) {
	t.Parallel()
	b := setupCampaign(t, 0)
	body := `{"to":"qa@acme.example","from":"news@acme.example","contact":"crm-1"}`
	expect(t, "no sender", b.do(t, "POST", "/v1/templates/news/test", b.keyA, body), http.StatusNotImplemented, "")
	expect(t, "contacts:write key", b.do(t, "POST", "/v1/templates/news/test", b.keyCon, body), http.StatusForbidden, "")
	expect(t, "no key", b.do(t, "POST", "/v1/templates/news/test", "", body), http.StatusUnauthorized, "")
}
