package templates_test

import (
	"encoding/json"
	"strings"
	"testing"

	"herald/internal/contacts"
	"herald/templates"
)

func TestContactData(t *testing.T) {
	t.Parallel()
	c := contacts.Contact{ID: 7, ExternalID: "crm-42", Email: "ada@example.com", Name: "  Ada   Lovelace ", Locale: "en-GB",
		Timezone: "Europe/London", Attributes: map[string]any{
			"plan": "pro", "seats": json.Number("12345678"), "score": 1234567.0, "note": nil,
			"address": map[string]any{"city": "London", "zip": nil},
		}}
	tpl := templates.Template{
		Subject: "Hi {{.contact.first_name}}",
		Text: "{{.contact.external_id}}|{{.contact.email}}|{{.contact.name}}|{{.contact.locale}}|{{.contact.timezone}}|" +
			"{{.contact.attributes.plan}}|{{.contact.attributes.seats}}|{{.contact.attributes.score}}|[{{.contact.attributes.note}}]|" +
			"{{.contact.attributes.address.city}}|[{{.contact.attributes.address.zip}}]|" +
			`{{index .contact.attributes "missing" | default "none"}}`,
	}
	out, err := templates.Render(tpl, map[string]any{"contact": templates.ContactData(c)})
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "Hi Ada" {
		t.Errorf("subject = %q", out.Subject)
	}
	want := "crm-42|ada@example.com|  Ada   Lovelace |en-GB|Europe/London|pro|12345678|1234567|[]|London|[]|none"
	if out.Text != want {
		t.Errorf("text = %q\nwant   %q", out.Text, want)
	}
	if c.Attributes["note"] != nil || c.Attributes["address"].(map[string]any)["zip"] != nil {
		t.Error("ContactData modified the contact's attributes")
	}

	for name, wantFirst := range map[string]string{"": "", "Ada": "Ada", "  ": "", "Jean-Luc Picard": "Jean-Luc", "Zoë\tY": "Zoë"} {
		if got := templates.ContactData(contacts.Contact{Name: name})["first_name"]; got != wantFirst {
			t.Errorf("first_name of %q = %q, want %q", name, got, wantFirst)
		}
	}
	if a, ok := templates.ContactData(contacts.Contact{})["attributes"].(map[string]any); !ok || a == nil {
		t.Errorf("attributes of a contact without any = %#v, want an empty map", a)
	}
}

// TestContactDataHostile: script in a contact's name and attributes is escaped in the HTML part
// and cannot add a header through the subject.
func TestContactDataHostile(t *testing.T) {
	t.Parallel()
	c := contacts.Contact{ExternalID: "x", Email: "x@example.com", Name: `<script>alert(1)</script> Eve`,
		Attributes: map[string]any{"site": "javascript:alert(2)", "bio": `"><img src=x onerror=alert(3)>`, "nl": "a\r\nBcc: v@example.com"}}
	tpl := templates.Template{
		Subject: "Hi {{.contact.first_name}}",
		HTML: `<p>{{.contact.name}}</p><a href="{{.contact.attributes.site}}" title="{{.contact.attributes.bio}}">site</a>` +
			`<p>{{.contact.attributes.bio}}</p>`,
	}
	out, err := templates.Render(tpl, map[string]any{"contact": templates.ContactData(c)})
	if err != nil {
		t.Fatal(err)
	}
	checkInert(t, "contact data", out.HTML)
	if low := strings.ToLower(out.HTML); strings.Contains(low, "<script") || strings.Contains(low, "<img") ||
		strings.Contains(low, "javascript:") {
		t.Errorf("HTML %q is not inert", out.HTML)
	}
	if !strings.Contains(out.HTML, "&lt;script&gt;") {
		t.Errorf("HTML %q: the name should appear escaped", out.HTML)
	}
	tpl.Subject = "Hi {{.contact.attributes.nl}}"
	if _, err := templates.Render(tpl, map[string]any{"contact": templates.ContactData(c)}); err == nil ||
		!strings.Contains(err.Error(), "subject") {
		t.Errorf("CRLF from an attribute into the subject: err = %v", err)
	}
}
