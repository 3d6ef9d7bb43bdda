package templates

import (
	"fmt"
	"strings"
	"testing"
)

// benchNewsletter is the 10 KB newsletter of BenchmarkRenderWithLinks (links_test.go, in the
// external test package): table layout, inline styles, twelve articles, five contact fields and
// the link functions.
func benchNewsletter() Template {
	var b strings.Builder
	b.WriteString(`<table width="100%" cellpadding="0" cellspacing="0" border="0" bgcolor="#f4f4f4"><tr><td align="center">` +
		`<table width="600" cellpadding="0" cellspacing="0" border="0" bgcolor="#ffffff">` +
		`<tr><td style="padding: 12px; font-family: Arial, sans-serif; font-size: 12px; color: #888888">` +
		`<a href="{{view_online_url}}" style="color: #888888">View this email in your browser</a></td></tr>` +
		`<tr><td style="padding: 24px; font-family: Arial, sans-serif; font-size: 16px; color: #333333">` +
		`<h1 style="font-size: 24px; margin: 0 0 12px 0">Hello {{.contact.first_name | default "there"}},</h1>` +
		`<p>Here is what is new on your {{.contact.attributes.plan}} plan in {{.contact.attributes.city}}, ` +
		`as of {{date "2 January 2006" .issue_date}}.</p>`)
	for i := range 12 {
		fmt.Fprintf(&b, `<table width="100%%" cellpadding="8" cellspacing="0" border="0"><tr>`+
			`<td width="120" valign="top"><img src="https://cdn.acme.example/img/article-%d.png" width="120" height="80" alt="Article %d"></td>`+
			`<td valign="top" style="font-family: Arial, sans-serif; font-size: 14px; line-height: 20px; color: #333333">`+
			`<h2 style="font-size: 18px; margin: 0 0 6px 0"><a href="https://acme.example/blog/article-%d?utm_source=newsletter&amp;utm_medium=email" style="color: #1a73e8; text-decoration: none">Article number %d: what changed this month</a></h2>`+
			`<p style="margin: 0">Lorem ipsum dolor sit amet, consectetur adipiscing elit. Sed do eiusmod tempor incididunt ut labore et dolore magna aliqua, ut enim ad minim veniam.</p>`+
			`</td></tr></table>`, i, i, i, i)
	}
	b.WriteString(`<p>Your account manager is {{.contact.attributes.manager}}; reply to this email to reach them.</p>` +
		`</td></tr><tr><td style="padding: 24px; font-family: Arial, sans-serif; font-size: 12px; color: #888888; border-top: 1px solid #eeeeee">` +
		`<p>You receive this because {{.contact.email}} subscribed to the Acme newsletter.</p>` +
		`<p><a href="{{unsubscribe_url}}" style="color: #888888">Unsubscribe</a> · <a href="{{preferences_url}}" style="color: #888888">Preferences</a></p>` +
		`<p>{{postal_address}}</p></td></tr></table></td></tr></table>`)
	return Template{Subject: "{{.contact.first_name | default \"Hello\"}}, your Acme news for {{date \"January\" .issue_date}}",
		HTML: b.String()}
}

func benchData() map[string]any {
	return map[string]any{"issue_date": "2026-11-24", "contact": map[string]any{
		"external_id": "crm-1", "email": "ada@example.com", "name": "Ada Lovelace", "first_name": "Ada",
		"locale": "", "timezone": "", "attributes": map[string]any{"plan": "Pro", "city": "London", "manager": "Grace Hopper"}}}
}

// BenchmarkRenderPresanitized renders the 10 KB newsletter on the fast path (sanitised once at
// Compile, text part from the pre-built text template) and on the per-render path (Sanitize and
// html2text every time), 300 renders per iteration after a warm-up so that -benchtime 1x is
// steady. It reports µs per render and allocations per render for each.
func BenchmarkRenderPresanitized(b *testing.B) {
	const renders = 300
	c, err := Compile(benchNewsletter())
	if err != nil {
		b.Fatal(err)
	}
	if c.fast == nil || c.fast.text == nil {
		b.Fatal("the newsletter is not pre-sanitised")
	}
	data := benchData()
	for _, path := range []struct {
		name   string
		render func() (Rendered, error)
	}{
		{"fast", func() (Rendered, error) { return c.Render(data) }},
		{"per-render", func() (Rendered, error) { return slowRender(c, data) }},
	} {
		b.Run(path.name, func(b *testing.B) {
			fast, err := c.Render(data)
			if err != nil {
				b.Fatal(err)
			}
			if slow, err := slowRender(c, data); err != nil || slow != fast {
				b.Fatalf("the paths differ (%v):\n%q\n%q", err, fast, slow)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var size int
			for b.Loop() {
				for range renders {
					out, err := path.render()
					if err != nil {
						b.Fatal(err)
					}
					size = len(out.HTML)
				}
			}
			n := float64(b.N * renders)
			per := float64(b.Elapsed().Nanoseconds()) / 1e3 / n
			b.ReportMetric(per, "µs/render")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: %d renders of a %d-byte newsletter, %.1f µs per render", path.name, b.N*renders, size, per)
		})
	}
}

// BenchNewsletter exports the benchmark newsletter to the package's external tests.
var BenchNewsletter = benchNewsletter
