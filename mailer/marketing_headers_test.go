package mailer_test

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"herald/consent"
	"herald/internal/smtpcapture"
	"herald/mailer"
	"herald/templates"
)

// marketingBody is a marketing send to contact c1 of workspace "a" for purpose "news".
func marketingBody(html, text string) string {
	return mustJSON(map[string]any{
		"stream": "marketing", "purpose": "news", "contact": "c1",
		"from": "News <news@acme.example>", "subject": "Our news", "html": html, "text": text,
	})
}

// sendMarketing seeds contact c1 with a grant of "news" titled title, sends it one marketing
// message and returns what the SMTP server received.
func sendMarketing(t *testing.T, b *bundle, title, html, text string) (smtpcapture.Message, seeded) {
	t.Helper()
	cs := seedContacts(t, b, b.wsA, "news", 1)
	if title != "" {
		// Straight to the table: the API refuses control characters, but List-Id must not rely on it.
		if _, err := b.pool.Exec(context.Background(), `UPDATE purposes SET title = $1 WHERE workspace_id = $2 AND name = 'news'`,
			title, b.wsA); err != nil {
			t.Fatal(err)
		}
	}
	b.send(t, b.keyA, "m1", marketingBody(html, text))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[0], cs[0]
}

// headerLines returns the raw header section's fields, unfolded, as "Name: value" lines.
func headerLines(t *testing.T, raw []byte) []string {
	t.Helper()
	head, _, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no header/body separator in %q", raw)
	}
	var out []string
	for _, line := range strings.Split(string(head), "\r\n") {
		if (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) && len(out) > 0 {
			out[len(out)-1] += line
			continue
		}
		if !regexp.MustCompile(`^[!-9;-~]+:`).MatchString(line) {
			t.Fatalf("header line %q is neither a field nor a continuation", line)
		}
		out = append(out, line)
	}
	return out
}

// fieldValues returns the values of every field called name (case-insensitive), in order.
func fieldValues(lines []string, name string) []string {
	var out []string
	for _, l := range lines {
		k, v, _ := strings.Cut(l, ":")
		if strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// bodyParts decodes a message's text parts, keyed by media type.
func bodyParts(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var walk func(h textproto.MIMEHeader, r io.Reader)
	walk = func(h textproto.MIMEHeader, r io.Reader) {
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(r, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header, p)
			}
		}
		if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out[mt] = string(body)
	}
	walk(textproto.MIMEHeader(msg.Header), msg.Body)
	return out
}

var unsubscribeRE = regexp.MustCompile(`^<(https://herald\.test/u/([a-z2-7]+))>, <mailto:unsubscribe\+([a-z2-7]+)@in\.herald\.test\?subject=unsubscribe>$`)

func TestMarketingListHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	m, c := sendMarketing(t, b, "", `<html><body><p>Hello</p></body></html>`, "Hello")
	lines := headerLines(t, m.Raw)

	lu := fieldValues(lines, "List-Unsubscribe")
	if len(lu) != 1 {
		t.Fatalf("List-Unsubscribe fields = %q, want exactly one", lu)
	}
	sub := unsubscribeRE.FindStringSubmatch(lu[0])
	if sub == nil {
		t.Fatalf("List-Unsubscribe = %q", lu[0])
	}
	link, token := sub[1], sub[2]
	if sub[3] != token {
		t.Errorf("mailto token %q differs from the https one %q", sub[3], token)
	}
	if post := fieldValues(lines, "List-Unsubscribe-Post"); len(post) != 1 || post[0] != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post fields = %q", post)
	}
	if id := fieldValues(lines, "List-Id"); len(id) != 1 || id[0] != `"News" <news.a.in.herald.test>` {
		t.Errorf("List-Id fields = %q", id)
	}

	p, err := consent.PurposeGet(context.Background(), b.pool, b.wsA, "news")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.consent.Keys.ParseToken(token)
	if err != nil {
		t.Fatalf("token in List-Unsubscribe: %v", err)
	}
	if want := (consent.Recipient{WorkspaceID: b.wsA, ContactID: c.ID, PurposeID: p.ID}); got != want {
		t.Errorf("token names %+v, want %+v", got, want)
	}

	parts := bodyParts(t, m.Raw)
	html, text := parts["text/html"], parts["text/plain"]
	wantHTML := `<a href="` + link + `">Unsubscribe or manage your preferences</a></p></body>`
	if !strings.Contains(html, wantHTML) || strings.Count(html, link) != 1 {
		t.Errorf("HTML part lacks the footer link before </BODY>: %q", html)
	}
	if want := "Hello\n\n--\nUnsubscribe or manage your preferences: " + link + "\n"; strings.ReplaceAll(text, "\r\n", "\n") != want {
		t.Errorf("text part = %q, want %q", text, want)
	}
}

// TestMarketingFooterPlacement stores messages directly (as campaigns do, without the API's
// sanitiser) and checks where the footer goes: before the last </body> whatever its case, else
// at the end; into each part the message has.
func TestMarketingFooterPlacement(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	link := `<a href="https://herald\.test/u/[a-z2-7]+">Unsubscribe or manage your preferences</a></p>`
	cases := []struct {
		html, text string
		want       map[string]string // media type -> pattern of the decoded part
	}{
		{"<HTML><Body><p>x</p></BODY >\n</HTML>", "", map[string]string{"text/html": `^<HTML><Body><p>x</p><p [^>]+>` + link + `</BODY >\r?\n</HTML>(\r\n)?$`}},
		{"<p>body</body> quoted</p></body></html>", "", map[string]string{"text/html": `^<p>body</body> quoted</p><p [^>]+>` + link + `</body></html>(\r\n)?$`}},
		{"<p>no body</p>", "plain", map[string]string{
			"text/html":  `^<p>no body</p><p [^>]+>` + link + `(\r\n)?$`,
			"text/plain": `^plain\r\n\r\n--\r\nUnsubscribe or manage your preferences: https://herald\.test/u/[a-z2-7]+\r\n$`}},
		{"", "text only", map[string]string{"text/plain": `^text only\r\n\r\n--\r\nUnsubscribe or manage your preferences: https://herald\.test/u/[a-z2-7]+\r\n$`}},
	}
	cs := seedContacts(t, b, b.wsA, "news", len(cases))
	ctx := context.Background()
	byRcpt := map[string]int{}
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for i, tc := range cases {
			id := testUUID()
			m := &mailer.Message{ID: id, WorkspaceID: b.wsA, Stream: mailer.StreamMarketing, Purpose: "news",
				ContactID: &cs[i].ID, To: cs[i].Email, From: "news@acme.example", Subject: "News",
				HTML: tc.html, Text: tc.text, MessageID: id + "@herald.test"}
			if _, err := mailer.MessageInsert(ctx, tx, m, "", nil); err != nil {
				return err
			}
			if err := mailer.EnqueueSend(ctx, b.river, tx, m, 5); err != nil {
				return err
			}
			byRcpt[cs[i].Email] = i
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := b.smtp.WaitFor(waitCtx(t), len(cases))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		tc := cases[byRcpt[m.To[0]]]
		parts := bodyParts(t, m.Raw)
		if len(parts) != len(tc.want) {
			t.Errorf("html %q text %q: parts %q", tc.html, tc.text, parts)
		}
		for mt, pattern := range tc.want {
			if !regexp.MustCompile(pattern).MatchString(parts[mt]) {
				t.Errorf("html %q text %q: %s part = %q, want %s", tc.html, tc.text, mt, parts[mt], pattern)
			}
		}
	}
}

func TestTransactionalHasNoListHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, b.keyA, "t1", mustJSON(map[string]any{
		"from": "support@acme.example", "to": "x@example.com", "subject": "Receipt",
		"html": "<html><body><p>Thanks</p></body></html>", "text": "Thanks",
	}))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	lines := headerLines(t, msgs[0].Raw)
	for _, name := range []string{"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"} {
		if v := fieldValues(lines, name); len(v) != 0 {
			t.Errorf("transactional message has %s: %q", name, v)
		}
	}
	if bytes.Contains(msgs[0].Raw, []byte("herald.test/u/")) || bytes.Contains(msgs[0].Raw, []byte("Unsubscribe or manage")) {
		t.Errorf("transactional message carries an unsubscribe footer:\n%s", msgs[0].Raw)
	}
}

// TestListIdTitleCannotInject: a purpose title is user data. CR/LF, quotes and backslashes in it
// stay inside List-Id's phrase; nothing becomes a header of its own.
func TestListIdTitleCannotInject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, title, want string
	}{
		{"crlf and quotes", "Evil\r\nBcc: victim@example.com\r\nX-Injected: 1 \"quoted\" \\ end",
			`"Evil Bcc: victim@example.com X-Injected: 1 \"quoted\" \\ end" <news.a.in.herald.test>`},
		{"bare lf and controls", "A\nX-Injected: 2\x01\x7f\u0085", `"A X-Injected: 2" <news.a.in.herald.test>`},
		{"non-ascii with crlf", "Café ✓\r\nX-Injected: 3 \"q\" <x>", ""},
		{"only controls", "\r\n\t", `<news.a.in.herald.test>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			m, _ := sendMarketing(t, b, tc.title, "<p>x</p>", "x")
			lines := headerLines(t, m.Raw)
			for _, name := range []string{"Bcc", "X-Injected"} {
				if v := fieldValues(lines, name); len(v) != 0 {
					t.Fatalf("title injected %s: %q\n%s", name, v, m.Raw)
				}
			}
			if len(m.To) != 1 {
				t.Fatalf("envelope recipients = %q", m.To)
			}
			ids := fieldValues(lines, "List-Id")
			if len(ids) != 1 {
				t.Fatalf("List-Id fields = %q", ids)
			}
			if tc.want != "" {
				if ids[0] != tc.want {
					t.Errorf("List-Id = %q, want %q", ids[0], tc.want)
				}
				return
			}
			// Encoded-words: decoding them gives the title with the line break as a space.
			phrase, ok := strings.CutSuffix(ids[0], " <news.a.in.herald.test>")
			if !ok || strings.ContainsAny(phrase, "\"<>") {
				t.Fatalf("List-Id = %q", ids[0])
			}
			dec, err := new(mime.WordDecoder).DecodeHeader(phrase)
			if err != nil || dec != `Café ✓ X-Injected: 3 "q" <x>` {
				t.Errorf("List-Id phrase decodes to %q (%v)", dec, err)
			}
		})
	}
}

// TestListUnsubscribeAllMarketing: in a batch of marketing sends every message carries its own
// recipient's token.
func TestListUnsubscribeAllMarketing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	cs := seedContacts(t, b, b.wsA, "news", 20)
	enqueueMarketing(t, b, b.wsA, "news", cs)
	msgs, err := b.smtp.WaitFor(waitCtx(t), len(cs))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, c := range cs {
		ids[c.Email] = c.ID
	}
	for _, m := range msgs {
		lu := fieldValues(headerLines(t, m.Raw), "List-Unsubscribe")
		sub := unsubscribeRE.FindStringSubmatch(strings.Join(lu, "|"))
		if sub == nil {
			t.Fatalf("List-Unsubscribe = %q", lu)
		}
		r, err := b.consent.Keys.ParseToken(sub[2])
		if err != nil || r.ContactID != ids[m.To[0]] || r.WorkspaceID != b.wsA {
			t.Errorf("message to %s: token names %+v (%v), want contact %d", m.To[0], r, err, ids[m.To[0]])
		}
	}
}

// TestMarketingBaseURL: one-click links need https (RFC 8058); plain http is accepted for a
// loopback dev server only. Otherwise marketing mail waits and finally fails rather than leave
// without working unsubscribe headers, while transactional mail is unaffected.
func TestMarketingBaseURL(t *testing.T) {
	t.Parallel()
	t.Run("loopback http", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{baseURL: "http://127.0.0.1:8080/"})
		m, _ := sendMarketing(t, b, "", "<p>x</p>", "x")
		lines := headerLines(t, m.Raw)
		lu, post := fieldValues(lines, "List-Unsubscribe"), fieldValues(lines, "List-Unsubscribe-Post")
		if len(lu) != 1 || !regexp.MustCompile(`^<http://127\.0\.0\.1:8080/u/[a-z2-7]+>, <mailto:`).MatchString(lu[0]) ||
			len(post) != 1 || post[0] != "List-Unsubscribe=One-Click" {
			t.Errorf("List-Unsubscribe = %q, -Post = %q", lu, post)
		}
	})
	t.Run("public http", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{baseURL: "http://mail.acme.example", maxAttempts: 2})
		seedContacts(t, b, b.wsA, "news", 1)
		id := b.send(t, b.keyA, "m1", marketingBody("<p>x</p>", "x"))
		res := b.waitStatus(t, b.keyA, id, "failed")
		if reason, _ := res.Body["status_reason"].(string); !strings.Contains(reason, "BaseURL (https)") {
			t.Errorf("status_reason = %q", reason)
		}
		b.send(t, b.keyA, "t1", mustJSON(map[string]any{"from": "a@acme.example", "to": "x@example.com", "subject": "s", "text": "t"}))
		msgs, err := b.smtp.WaitFor(waitCtx(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 1 || msgs[0].To[0] != "x@example.com" {
			t.Errorf("received %d messages, first to %q; want only the transactional one", len(msgs), msgs[0].To)
		}
	})
}

// TestTemplateLinksFilled: a stored template's link functions print placeholders; the message that
// leaves carries the recipient's real link instead, marketing or transactional, and never a
// placeholder.
func TestTemplateLinksFilled(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	cs := seedContacts(t, b, b.wsA, "news", 1)
	if _, err := templates.Create(ctx, b.pool, b.wsA, templates.Input{Name: "letter", Subject: "News",
		HTML: `<p>Hi</p><p><a href="{{unsubscribe_url}}">Leave</a> {{postal_address}}</p>`,
		Text: "Hi\nLeave: {{preferences_url}}\n{{postal_address}}"}); err != nil {
		t.Fatal(err)
	}
	b.send(t, b.keyA, "m1", mustJSON(map[string]any{"stream": "marketing", "purpose": "news", "contact": "c1",
		"from": "news@acme.example", "template": "letter"}))
	b.send(t, b.keyA, "t1", mustJSON(map[string]any{"contact": "c1", "from": "news@acme.example", "template": "letter"}))
	b.send(t, b.keyA, "t2", mustJSON(map[string]any{"to": "x@example.com", "from": "news@acme.example", "template": "letter"}))
	msgs, err := b.smtp.WaitFor(waitCtx(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		parts := bodyParts(t, m.Raw)
		all := parts["text/html"] + parts["text/plain"]
		if strings.Contains(all, "herald.invalid") || strings.Contains(all, "herald postal address") {
			t.Errorf("a placeholder left in the message to %v:\n%s", m.To, all)
		}
		if m.To[0] == "x@example.com" {
			continue // no contact: no link to give
		}
		for _, u := range unsubscribeURLRE.FindAllString(all, -1) {
			tok := strings.TrimPrefix(u, testBaseURL+"/u/")
			r, err := b.consent.Keys.ParseToken(tok)
			if err != nil || r.ContactID != cs[0].ID || r.WorkspaceID != b.wsA {
				t.Errorf("link %s names %+v (%v)", u, r, err)
			}
		}
		if n := len(unsubscribeURLRE.FindAllString(all, -1)); n < 2 {
			t.Errorf("message to %v: %d personal links, want the template's two\n%s", m.To, n, all)
		}
	}
}

var unsubscribeURLRE = regexp.MustCompile(regexp.QuoteMeta(testBaseURL) + `/u/[a-z2-7]+`)
