package templates_test

import (
	"encoding/json"
	"testing"

	"herald/internal/contacts"
	"herald/templates"
)

// TestRenderContactSameAsRender: RenderContact gives what Render gives for the same contact's
// data, on the fast path and the per-render one, for attributes of every JSON shape and hostile
// values, errors included.
func TestRenderContactSameAsRender(t *testing.T) {
	tpls := []templates.Template{
		{Subject: "Hi {{.contact.first_name}}", HTML: `<p>{{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
			`<a href="{{unsubscribe_url}}">U</a><p>{{postal_address}}</p>`},
		{Subject: "{{.contact.attributes.n}}", HTML: `<p>{{.contact.attributes.n}} {{.contact.attributes.none}} ` +
			`{{range .contact.attributes.list}}[{{.}}]{{end}} {{.contact.attributes.obj.k}}</p>`},
		{Subject: "s", Text: `{{.contact.email}} {{.contact.attributes.n | printf "%v"}} {{.contact.attributes.missing}}`},
		{Subject: "s", HTML: `<p style="color:{{.contact.attributes.c}}">{{.contact.attributes.html}}</p>`},
	}
	people := []contacts.Contact{
		{ExternalID: "1", Email: "a@example.com", Name: "Ada Lovelace", Attributes: map[string]any{"plan": "pro",
			"n": 3.5, "none": nil, "list": []any{1.0, nil, "x"}, "obj": map[string]any{"k": 2e21}, "c": "red", "html": "<b>x</b>"}},
		{Email: "b@example.com", Name: "  ", Attributes: map[string]any{"plan": `"><script>alert(1)</script>`,
			"n": json.Number("12"), "none": "", "list": []any{}, "obj": map[string]any{"k": nil}, "c": "expression(x)", "html": "\x00"}},
		{Email: "c@example.com", Attributes: nil},
	}
	for i, tpl := range tpls {
		c, err := templates.Compile(tpl)
		if err != nil {
			t.Fatalf("template %d: %v", i, err)
		}
		for j, p := range people {
			want, wantErr := c.Render(map[string]any{"contact": templates.ContactData(p)})
			got, err := c.RenderContact(p)
			if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("template %d, contact %d: err = %v, want %v", i, j, err, wantErr)
			}
			if got != want {
				t.Fatalf("template %d, contact %d:\n got %+v\nwant %+v", i, j, got, want)
			}
		}
	}
}
