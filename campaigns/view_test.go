package campaigns_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"herald/campaigns"
	"herald/consent"
	"herald/internal/smtpcapture"
)

// viewHTML uses every link function, in the HTML and (generated) text part.
const viewHTML = `<html><body><p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
	`<p><a href="{{view_online_url}}">View online</a></p>` +
	`<p><a href="{{unsubscribe_url}}">Unsubscribe</a> | <a href="{{preferences_url}}">Preferences</a></p>` +
	`<p>{{postal_address}}</p></body></html>`

// viewBundle is a sendBundle whose campaigns were sent, with the recipients' pages (/v/ and the
// consent package's /u/) served as cmd/herald mounts them.
type viewBundle struct {
	*sendBundle
	srv *httptest.Server
}

func viewSetup(t *testing.T) *viewBundle {
	t.Helper()
	b := &viewBundle{sendBundle: sendSetup(t, sendOpts{})}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := chi.NewRouter()
	(&campaigns.ViewHandler{DB: b.pool, Consent: b.svc, Logger: logger, BaseURL: sendTestBase,
		InboundDomain: "herald.example"}).Routes(r)
	(&consent.Handler{DB: b.pool, Service: b.svc, Logger: logger, BaseURL: sendTestBase}).PageRoutes(r)
	b.srv = httptest.NewServer(r)
	t.Cleanup(b.srv.Close)
	return b
}

// send runs a campaign of o to the contacts through the batch worker and returns what each
// address received.
func (b *viewBundle) send(t *testing.T, o campaignOpts, contactIDs ...int64) (int64, map[string][]smtpcapture.Message) {
	t.Helper()
	id := b.campaign(t, o)
	first, last := b.recipients(t, id, contactIDs)
	b.smtp.Reset()
	if err := b.work(context.Background(), id, first, last, 1, 5); err != nil {
		t.Fatal(err)
	}
	return id, received(b.smtp)
}

func (b *viewBundle) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(b.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

var viewLinkRE = regexp.MustCompile(`https://herald\.example/v/([a-z2-7]+)`)

// viewToken is the view-online token in a received message's text part.
func viewToken(t *testing.T, m smtpcapture.Message) string {
	t.Helper()
	parts := mimeParts(t, m.Raw)
	match := viewLinkRE.FindStringSubmatch(parts["text/plain"])
	if match == nil {
		t.Fatalf("no view-online link in the text part:\n%s", parts["text/plain"])
	}
	return match[1]
}

// mimeParts decodes a received message's body parts by media type.
func mimeParts(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(h func(string) string, body io.Reader)
	walk = func(h func(string) string, body io.Reader) {
		mt, params, err := mime.ParseMediaType(h("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header.Get, p)
			}
		}
		switch strings.ToLower(h("Content-Transfer-Encoding")) {
		case "quoted-printable":
			body = quotedprintable.NewReader(body)
		case "base64":
			body = base64.NewDecoder(base64.StdEncoding, body)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			t.Fatal(err)
		}
		out[mt] = strings.ReplaceAll(string(b), "\r\n", "\n")
	}
	walk(msg.Header.Get, msg.Body)
	return out
}

// checkViewHeaders: the page runs nothing, is framed, cached and indexed nowhere, leaks no
// Referer and sets no cookie, whatever its status.
func checkViewHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	h := resp.Header
	for name, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "img-src https: data:", "style-src 'unsafe-inline'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
		}
	}
	if strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q allows scripts", csp)
	}
	if !strings.Contains(h.Get("X-Robots-Tag"), "noindex") {
		t.Errorf("X-Robots-Tag: %q", h.Get("X-Robots-Tag"))
	}
	if v := h.Values("Set-Cookie"); len(v) > 0 {
		t.Errorf("Set-Cookie: %q", v)
	}
}

// TestViewOnlineSameAsMail: each recipient's page is byte for byte the HTML part they received
// (their name escaped, their own links, the footer), and the mail links to it in both parts.
func TestViewOnlineSameAsMail(t *testing.T) {
	t.Parallel()
	b := viewSetup(t)
	ann := b.contact(t, "ann@example.com", "Ann <script>alert(1)</script>", true)
	bob := b.contact(t, "bob@example.com", `Bob "><img src=x onerror=alert(1)>`, true)
	_, got := b.send(t, campaignOpts{html: viewHTML}, ann, bob)

	seen := map[string]bool{}
	for addr, name := range map[string]string{"ann@example.com": "Ann", "bob@example.com": "Bob"} {
		if len(got[addr]) != 1 {
			t.Fatalf("%s received %d messages", addr, len(got[addr]))
		}
		m := got[addr][0]
		parts := mimeParts(t, m.Raw)
		tok := viewToken(t, m)
		if seen[tok] {
			t.Fatalf("two recipients share the view token %s", tok)
		}
		seen[tok] = true
		if !strings.Contains(parts["text/html"], `href="`+sendTestBase+"/v/"+tok+`"`) {
			t.Errorf("%s: the HTML part lacks the view link", addr)
		}
		resp, page := b.get(t, "/v/"+tok)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET /v/: %d %s", addr, resp.StatusCode, page)
		}
		checkViewHeaders(t, resp)
		if page != parts["text/html"] {
			t.Errorf("%s: the page is not the HTML part received\npage: %s\nmail: %s", addr, page, parts["text/html"])
		}
		if !strings.Contains(page, "Hello "+name) || strings.Contains(page, "<script") || strings.Contains(page, "<img") {
			t.Errorf("%s: name missing or unescaped: %s", addr, page)
		}
		if !strings.Contains(page, "gold") || !strings.Contains(page, "Unsubscribe or manage your preferences") {
			t.Errorf("%s: attribute or footer missing: %s", addr, page)
		}
		other := map[string]string{"Ann": "Bob", "Bob": "Ann"}[name]
		if strings.Contains(page, other) {
			t.Errorf("%s: the page shows %s's data", addr, other)
		}
		// The mail's unsubscribe link is the recipient's own, in the page as in the mail.
		unsub := regexp.MustCompile(`https://herald\.example/u/[a-z2-7]+`).FindString(parts["text/plain"])
		if unsub == "" || !strings.Contains(page, unsub) {
			t.Errorf("%s: the page lacks the mail's unsubscribe link %q", addr, unsub)
		}
	}
}

// TestViewOnlineTextOnly: a message without an HTML part is shown as its text, escaped.
func TestViewOnlineTextOnly(t *testing.T) {
	t.Parallel()
	b := viewSetup(t)
	ann := b.contact(t, "ann@example.com", "Ann <b>&amp;", true)
	_, got := b.send(t, campaignOpts{text: "Hello {{.contact.name}}\nOnline: {{view_online_url}}\n" +
		"Unsubscribe: {{unsubscribe_url}}\n{{postal_address}}\n"}, ann)
	m := got["ann@example.com"][0]
	text := mimeParts(t, m.Raw)["text/plain"]
	resp, page := b.get(t, "/v/"+viewToken(t, m))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, page)
	}
	checkViewHeaders(t, resp)
	if !strings.Contains(page, "<pre") || !strings.Contains(page, "Hello Ann &lt;b&gt;&amp;amp;") || strings.Contains(page, "<b>") {
		t.Errorf("page: %s", page)
	}
	if !strings.Contains(page, "1 Main Street\nSpringfield") || !strings.Contains(text, "1 Main Street\nSpringfield") {
		t.Errorf("postal address: page %s\nmail %s", page, text)
	}
}

// TestViewOnlineRefusals: forged, altered, truncated and cross-kind tokens get a small 400 page
// with nothing of the message; a token of a recipient whose contact or campaign is gone a 404.
// A recipient who withdrew consent still sees the message they received.
func TestViewOnlineRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := viewSetup(t)
	ann := b.contact(t, "ann@example.com", "Ann Secret", true)
	bob := b.contact(t, "bob@example.com", "Bob Secret", true)
	cat := b.contact(t, "cat@example.com", "Cat Secret", true)
	dan := b.contact(t, "dan@example.com", "Dan Secret", true)
	campaign, got := b.send(t, campaignOpts{html: viewHTML}, ann, bob, cat, dan)
	tok := viewToken(t, got["ann@example.com"][0])
	ids, err := b.svc.Keys.ParseIDs("herald/view/v1", tok, 3)
	if err != nil {
		t.Fatal(err)
	}
	unsub := b.svc.Keys.Token(consent.Recipient{WorkspaceID: b.ws, ContactID: ann, PurposeID: b.purpose.ID})

	// A second campaign of the same workspace, and a workspace with a campaign of its own.
	campaign2, _ := b.send(t, campaignOpts{html: viewHTML}, ann)
	var rcpt2, wsB int64
	if err := b.pool.QueryRow(ctx, `SELECT id FROM campaign_recipients WHERE campaign_id = $1`, campaign2).Scan(&rcpt2); err != nil {
		t.Fatal(err)
	}
	if err := b.pool.QueryRow(ctx, `INSERT INTO workspaces (name) VALUES ('globex') RETURNING id`).Scan(&wsB); err != nil {
		t.Fatal(err)
	}
	forger, err := consent.NewKeys("another-hash-key-0123456789", "1:another-token-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	flipped := []byte(tok)
	flipped[len(flipped)/2] = map[bool]byte{true: 'b', false: 'a'}[flipped[len(flipped)/2] == 'a']

	for _, tc := range []struct {
		name, path string
		status     int
	}{
		{"forged with another key", "/v/" + forger.SignIDs("herald/view/v1", ids...), http.StatusBadRequest},
		{"one character changed", "/v/" + string(flipped), http.StatusBadRequest},
		{"truncated", "/v/" + tok[:len(tok)-1], http.StatusBadRequest},
		{"half", "/v/" + tok[:len(tok)/2], http.StatusBadRequest},
		{"extended", "/v/" + tok + "a", http.StatusBadRequest},
		{"garbage", "/v/hello%20world", http.StatusBadRequest},
		{"huge", "/v/" + strings.Repeat("a", 4000), http.StatusBadRequest},
		{"unsubscribe token at /v/", "/v/" + unsub, http.StatusBadRequest},
		{"view token at /u/", "/u/" + tok, http.StatusBadRequest},
		{"zero recipient", "/v/" + b.svc.Keys.SignIDs("herald/view/v1", b.ws, campaign, 0), http.StatusBadRequest},
		{"campaign of another workspace", "/v/" + b.svc.Keys.SignIDs("herald/view/v1", wsB, campaign, ids[2]), http.StatusBadRequest},
		{"recipient of another campaign", "/v/" + b.svc.Keys.SignIDs("herald/view/v1", b.ws, campaign, rcpt2), http.StatusNotFound},
		{"no such campaign", "/v/" + b.svc.Keys.SignIDs("herald/view/v1", b.ws, campaign+1000, ids[2]), http.StatusNotFound},
	} {
		resp, page := b.get(t, tc.path)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.name, resp.StatusCode, tc.status, page)
		}
		if strings.HasPrefix(tc.path, "/u/") { // the consent package's page
			if !strings.Contains(page, "Invalid link") {
				t.Errorf("%s: %s", tc.name, page)
			}
			continue
		}
		checkViewHeaders(t, resp)
		if strings.Contains(page, "Secret") || strings.Contains(page, "@example.com") || len(page) > 1000 {
			t.Errorf("%s: the refusal shows more than a message: %s", tc.name, page)
		}
	}

	// Withdrawn consent: still shown. Deleted or erased contact: gone.
	b.consent(t, bob, consent.ActionWithdrawn)
	if _, err := b.pool.Exec(ctx, `DELETE FROM contacts WHERE id = $1`, cat); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE contacts SET email = '', name = '', attributes = '{}' WHERE id = $1`, dan); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]int{"bob@example.com": http.StatusOK, "cat@example.com": http.StatusNotFound,
		"dan@example.com": http.StatusNotFound} {
		resp, page := b.get(t, "/v/"+viewToken(t, got[addr][0]))
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d: %s", addr, resp.StatusCode, want, page)
		}
		checkViewHeaders(t, resp)
		if want != http.StatusOK && strings.Contains(page, "Secret") {
			t.Errorf("%s: a gone contact's page shows data: %s", addr, page)
		}
	}

	// A deleted campaign takes its pages with it (its recipients go with it).
	if _, err := b.pool.Exec(ctx, `DELETE FROM campaigns WHERE id = $1`, campaign); err != nil {
		t.Fatal(err)
	}
	if resp, page := b.get(t, "/v/"+tok); resp.StatusCode != http.StatusNotFound {
		t.Errorf("deleted campaign: %d %s", resp.StatusCode, page)
	}
}
