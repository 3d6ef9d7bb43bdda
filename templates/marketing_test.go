package templates_test

import (
	"errors"
	"strings"
	"testing"

	"herald/templates"
)

func TestCheckMarketing(t *testing.T) {
	t.Parallel()
	const (
		link    = `<a href="{{unsubscribe_url}}">Unsubscribe</a>`
		address = `<p>{{postal_address}}</p>`
		text    = "Hello\n\nUnsubscribe: {{unsubscribe_url}}\n{{postal_address}}\n"
	)
	for _, tc := range []struct {
		name, html, text string
		part             string   // "" when the template passes
		says             []string // in the error
	}{
		{name: "html with both", html: "<p>Hi {{.contact.first_name}}</p>" + link + address},
		{name: "html with both, generated text", html: `<div><a class="u" href='{{unsubscribe_url}}'>Stop</a></div><p>` +
			`{{postal_address}}</p>`},
		{name: "unquoted href and preferences link", html: `<a href={{preferences_url}}>Manage</a>` + address},
		{name: "text only with both", text: text},
		{name: "html and text with both", html: link + address, text: text},
		{name: "links also inside if", html: `{{if .vip}}` + link + `{{end}}` + link + address},
		{name: "missing link", html: "<p>Hi</p>" + address, part: "html", says: []string{"unsubscribe link"}},
		{name: "link only inside if", html: `{{if .show}}` + link + `{{end}}` + address, part: "html",
			says: []string{"unsubscribe link", "outside any {{if}}"}},
		{name: "link only in else", html: `{{if .x}}x{{else}}` + link + `{{end}}` + address, part: "html"},
		{name: "link only inside range", html: `{{range .items}}` + link + `{{end}}` + address, part: "html"},
		{name: "link only inside with", html: `{{with .u}}` + link + `{{end}}` + address, part: "html"},
		{name: "missing address", html: link, part: "html", says: []string{"postal address"}},
		{name: "address only inside if", html: link + `{{if .a}}` + address + `{{end}}`, part: "html", says: []string{"postal address"}},
		{name: "missing both", html: "<p>Hi</p>", part: "html", says: []string{"unsubscribe link", "postal address"}},
		{name: "literal URL instead of the function", html: `<a href="https://acme.example/unsubscribe">Unsubscribe</a>` + address,
			part: "html", says: []string{"unsubscribe link"}},
		{name: "literal placeholder instead of the function", html: `<a href="` + templates.PlaceholderUnsubscribe + `">U</a>` +
			`<p>` + templates.PlaceholderPostalAddress + `</p>`, part: "html"},
		{name: "link in a comment", html: `<!-- ` + link + ` -->` + address, part: "html"},
		{name: "link in img src", html: `<img src="{{unsubscribe_url}}">` + address, part: "html"},
		{name: "link as text, not href", html: `<p>{{unsubscribe_url}}</p>` + address, part: "html"},
		{name: "link inside a longer URL", html: `<a href="https://acme.example/?u={{unsubscribe_url}}">U</a>` + address, part: "html"},
		{name: "link hidden by a pipeline", html: `<a href="{{unsubscribe_url | printf "%.0s"}}">U</a>` + address, part: "html"},
		{name: "link only assigned", html: `{{$u := unsubscribe_url}}<a href="https://x.example/">U</a>` + address, part: "html"},
		{name: "address in an attribute", html: link + `<p title="{{postal_address}}">x</p>`, part: "html", says: []string{"postal address"}},
		{name: "address in script", html: link + `<script>var a = "{{postal_address}}";</script>`, part: "html"},
		{name: "text part lacking both while html has them", html: link + address, text: "Hello", part: "text",
			says: []string{"unsubscribe link", "postal address"}},
		{name: "text part with link only in if", html: link + address, text: "{{if .x}}{{unsubscribe_url}}{{end}}\n{{postal_address}}",
			part: "text", says: []string{"unsubscribe link"}},
		{name: "text only lacking address", text: "{{unsubscribe_url}}", part: "text", says: []string{"postal address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := templates.CheckMarketing(templates.Template{Subject: "News", HTML: tc.html, Text: tc.text})
			if tc.part == "" {
				if err != nil {
					t.Fatalf("CheckMarketing = %v, want nil", err)
				}
				return
			}
			var pe *templates.PartError
			if !errors.As(err, &pe) || pe.Part != tc.part {
				t.Fatalf("CheckMarketing = %v, want a *PartError for %q", err, tc.part)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if tc.name == "missing address" && strings.Contains(err.Error(), "unsubscribe link") {
				t.Errorf("error %q names the link, which is there", err)
			}
		})
	}
}

// TestCheckMarketingBrokenTemplate: a part that does not parse is reported as such.
func TestCheckMarketingBrokenTemplate(t *testing.T) {
	t.Parallel()
	var pe *templates.PartError
	err := templates.CheckMarketing(templates.Template{Subject: "s", HTML: "<p>{{.x</p>"})
	if !errors.As(err, &pe) || pe.Part != "html" {
		t.Fatalf("err = %v", err)
	}
}
