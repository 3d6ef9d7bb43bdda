package templates_test

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"herald/internal/contacts"
	"herald/templates"
)

var testLinks = templates.Links{
	Unsubscribe:   "https://herald.example/u/abc234?x=1&y=2",
	Preferences:   "https://herald.example/u/abc234",
	ViewOnline:    "https://herald.example/v/abc234",
	PostalAddress: "Acme <Ltd> & Co\r\n1 Main Street\n\n  Springfield  \n",
}

// TestPlaceholdersSurvive: each placeholder comes out of html/template's escaping (href, text,
// unquoted attribute), the sanitiser and the generated text part exactly as printed.
func TestPlaceholdersSurvive(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{
		Subject: "News {{view_online_url}}",
		HTML: `<p>Hi</p><a href="{{unsubscribe_url}}">Unsubscribe</a> <a href='{{preferences_url}}'>Preferences</a> ` +
			`<a href={{view_online_url}}>View online</a><p>{{unsubscribe_url}}</p><p>{{postal_address}}</p>`,
	}
	out, err := templates.Render(tpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`href="` + templates.PlaceholderUnsubscribe + `"`, `href="` + templates.PlaceholderPreferences + `"`,
		`href="` + templates.PlaceholderViewOnline + `"`, "<p>" + templates.PlaceholderUnsubscribe + "</p>",
		"<p>" + templates.PlaceholderPostalAddress + "</p>",
	} {
		if !strings.Contains(out.HTML, want) {
			t.Errorf("HTML %q lacks %q", out.HTML, want)
		}
	}
	if again := templates.Sanitize(out.HTML); again != out.HTML {
		t.Errorf("Sanitize changed the placeholders:\n%q\n%q", out.HTML, again)
	}
	for _, want := range []string{"Unsubscribe <" + templates.PlaceholderUnsubscribe + ">",
		"View online <" + templates.PlaceholderViewOnline + ">", templates.PlaceholderPostalAddress} {
		if !strings.Contains(out.Text, want) {
			t.Errorf("generated text %q lacks %q", out.Text, want)
		}
	}
	if out.Subject != "News "+templates.PlaceholderViewOnline {
		t.Errorf("subject = %q", out.Subject)
	}

	got := out.WithLinks(testLinks)
	wantHTML := `<p>Hi</p><a href="https://herald.example/u/abc234?x=1&amp;y=2">Unsubscribe</a> ` +
		`<a href="https://herald.example/u/abc234">Preferences</a> <a href="https://herald.example/v/abc234">View online</a>` +
		`<p>https://herald.example/u/abc234?x=1&amp;y=2</p><p>Acme &lt;Ltd&gt; &amp; Co<br>1 Main Street<br>Springfield</p>`
	if got.HTML != wantHTML {
		t.Errorf("HTML with links =\n%q\nwant\n%q", got.HTML, wantHTML)
	}
	if !strings.Contains(got.Text, "Unsubscribe <https://herald.example/u/abc234?x=1&y=2>") ||
		!strings.Contains(got.Text, "Acme <Ltd> & Co\n1 Main Street\nSpringfield") || strings.Contains(got.Text, "herald.invalid") {
		t.Errorf("text with links = %q", got.Text)
	}
	if got.Subject != "News https://herald.example/v/abc234" {
		t.Errorf("subject with links = %q", got.Subject)
	}
}

// TestWithLinksText: a written text part keeps the address as lines; the subject gets it on one
// line, so a multi-line address cannot add a header.
func TestWithLinksText(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{Subject: "From {{postal_address}}",
		Text: "Hello\n\nUnsubscribe: {{unsubscribe_url}}\nPreferences: {{preferences_url}}\n\n{{postal_address}}\n"}
	out, err := templates.Render(tpl, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := out.WithLinks(testLinks)
	want := "Hello\n\nUnsubscribe: https://herald.example/u/abc234?x=1&y=2\nPreferences: https://herald.example/u/abc234\n\n" +
		"Acme <Ltd> & Co\n1 Main Street\nSpringfield\n"
	if got.Text != want {
		t.Errorf("text =\n%q\nwant\n%q", got.Text, want)
	}
	if got.Subject != "From Acme <Ltd> & Co, 1 Main Street, Springfield" {
		t.Errorf("subject = %q", got.Subject)
	}
	l := testLinks
	l.ViewOnline = "https://x.example/\r\nBcc: v@example.com"
	tpl.Subject = "{{view_online_url}}"
	if out, err = templates.Render(tpl, nil); err != nil {
		t.Fatal(err)
	}
	if s := out.WithLinks(l).Subject; strings.ContainsAny(s, "\r\n") {
		t.Errorf("subject %q has a line break", s)
	}
	if (templates.Rendered{Text: "no links"}).WithLinks(l).Text != "no links" {
		t.Error("a part without placeholders changed")
	}
}

// TestWithLinksPositions: placeholders at either end, adjacent, repeated and interleaved are all
// replaced, and a replaced value is not scanned again.
func TestWithLinksPositions(t *testing.T) {
	t.Parallel()
	u, p, v, a := templates.PlaceholderUnsubscribe, templates.PlaceholderPreferences, templates.PlaceholderViewOnline,
		templates.PlaceholderPostalAddress
	l := templates.Links{Unsubscribe: "U", Preferences: "P", ViewOnline: v, PostalAddress: u}
	for in, want := range map[string]string{
		"":                                   "",
		u:                                    "U",
		u + u + p + u:                        "UUPU",
		"x" + a + "y" + p + "z" + u:          "x" + u + "yPzU",
		v + a + v:                            v + u + v,
		"https://unsubscribe.herald.invalid": "https://unsubscribe.herald.invalid",
		"[[herald postal address]":           "[[herald postal address]",
	} {
		if got := (templates.Rendered{Text: in}).WithLinks(l).Text; got != want {
			t.Errorf("WithLinks(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPlaceholdersFromData: data that prints a placeholder gets it replaced like the template's
// own. Each case is harmless: the values are the recipient's own links, HTML-escaped; the
// address placeholder is percent-encoded by html/template in a URL attribute, so it is not
// replaced there and the address (which could read "javascript:...") never becomes a link.
func TestPlaceholdersFromData(t *testing.T) {
	t.Parallel()
	l := testLinks
	l.PostalAddress = "javascript:alert(1)//\n\"><script>alert(2)</script>"
	tpl := templates.Template{Subject: "Hi {{.name}}",
		HTML: `<p>{{.name}}</p><a href="{{.url}}">a</a><a href="{{.addr}}">b</a><img alt="{{.addr}}" src="https://i.example/x.png">` +
			`<a href={{.addr}}>c</a><a href="https://site.example/?next={{.url}}">d</a>`}
	data := map[string]any{"name": templates.PlaceholderUnsubscribe, "url": templates.PlaceholderUnsubscribe,
		"addr": templates.PlaceholderPostalAddress}
	out, err := templates.Render(tpl, data)
	if err != nil {
		t.Fatal(err)
	}
	got := out.WithLinks(l)
	// The address text lands in the alt attribute, escaped: text, not a link or markup.
	z := html.NewTokenizer(strings.NewReader(got.HTML))
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		if tok.Data == "script" {
			t.Fatalf("HTML %q has a script element", got.HTML)
		}
		for _, a := range tok.Attr {
			if (a.Key == "href" || a.Key == "src") && !strings.HasPrefix(a.Val, "https://") && !strings.HasPrefix(a.Val, "[[") {
				t.Errorf("HTML %q: %s=%q", got.HTML, a.Key, a.Val)
			}
		}
	}
	for _, want := range []string{
		`<p>https://herald.example/u/abc234?x=1&amp;y=2</p>`,     // text: the recipient's own link
		`<a href="https://herald.example/u/abc234?x=1&amp;y=2">`, // href: likewise
		`<a href="[[herald%20postal%20address]]">`,               // not replaced in a URL
		`alt="javascript:alert(1)//<br>&#34;&gt;&lt;script&gt;`,  // escaped in an attribute
		`next=https%3a%2f%2funsubscribe.herald.invalid%2f`,       // query-escaped: no placeholder left
	} {
		if !strings.Contains(got.HTML, want) {
			t.Errorf("HTML %q lacks %q", got.HTML, want)
		}
	}
	if got.Subject != "Hi https://herald.example/u/abc234?x=1&y=2" {
		t.Errorf("subject = %q", got.Subject)
	}
}

// BenchmarkRenderWithLinks measures one recipient of a campaign: render a compiled 10 KB
// newsletter with five contact fields (sanitising the HTML and generating the text part), then
// replace the placeholders with the recipient's links. Each iteration renders a fixed 300 times,
// after one warm-up render, so that make bench's -benchtime 1x gives a steady figure.
func BenchmarkRenderWithLinks(b *testing.B) {
	const renders = 300
	tpl := templates.BenchNewsletter()
	if err := templates.CheckMarketing(tpl); err != nil {
		b.Fatal(err)
	}
	c, err := templates.Compile(tpl)
	if err != nil {
		b.Fatal(err)
	}
	contact := contacts.Contact{ExternalID: "crm-1", Email: "ada@example.com", Name: "Ada Lovelace",
		Attributes: map[string]any{"plan": "Pro", "city": "London", "manager": "Grace Hopper"}}
	data := map[string]any{"contact": templates.ContactData(contact), "issue_date": "2026-11-24"}
	if _, err := c.Render(data); err != nil { // builds the sanitiser's policy
		b.Fatal(err)
	}
	var size int
	var links time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for range renders {
			out, err := c.Render(data)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			out = out.WithLinks(testLinks)
			links += time.Since(start)
			size = len(out.HTML)
		}
	}
	n := float64(b.N * renders)
	perRender := float64(b.Elapsed().Microseconds()) / n
	perLinks := float64(links.Nanoseconds()) / 1e3 / n
	b.ReportMetric(perRender, "µs/render")
	b.ReportMetric(perLinks, "µs/withlinks")
	b.Logf("%d renders of a %d-byte newsletter: %.0f µs per render with links, of which WithLinks %.1f µs",
		b.N*renders, size, perRender, perLinks)
}
