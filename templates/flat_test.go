package templates

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"herald/internal/contacts"
)

// withoutFlat is c rendering every part through its template.
func withoutFlat(c *Compiled) *Compiled {
	t := *c
	t.flatSubject, t.flatText, t.flatFastHTML, t.flatFastText = nil, nil, nil, nil
	return &t
}

// flatParts checks that each flat form, where it gives an output, gives the template's, and
// returns how many did.
func flatParts(t *testing.T, c *Compiled, data map[string]any) int {
	t.Helper()
	n := 0
	check := func(part string, f *flatTemplate, tpl executor) {
		if f == nil {
			return
		}
		got, ok := f.execute(&renderData{m: data})
		if !ok {
			return
		}
		n++
		want, err := c.execute(part, tpl, data)
		if err != nil || got != want {
			t.Errorf("%s: flat %q, template %q (%v)", part, got, want, err)
		}
	}
	check("subject", c.flatSubject, c.subject)
	if c.text != nil {
		check("text", c.flatText, c.text)
	}
	if c.fast != nil {
		check("html", c.flatFastHTML, c.fast.html)
		if c.fast.text != nil {
			check("text", c.flatFastText, c.fast.text)
		}
	}
	return n
}

// sameAsTemplate renders data with the flat forms and without them: the same output or the same
// error.
func sameAsTemplate(t *testing.T, name string, c *Compiled, data map[string]any) {
	t.Helper()
	got, err := c.Render(data)
	want, wantErr := withoutFlat(c).Render(data)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("%s: error %v, template's %v", name, err, wantErr)
	}
	if got != want {
		t.Fatalf("%s:\n got %+v\nwant %+v", name, got, want)
	}
	flatParts(t, c, data)
}

// TestFlatMatchesTemplate: a flat part prints what its template prints, and leaves to the
// template whatever it cannot print the same way (missing keys, values of other types, values
// the sanitiser would change, nil, nested data), so that renders and errors are the template's.
func TestFlatMatchesTemplate(t *testing.T) {
	tpls := []struct {
		tpl  Template
		flat int // parts expected flat for the first data set
	}{
		{Template{Subject: "News for {{.contact.first_name}}", HTML: `<p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
			`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`}, 3},
		{Template{Subject: "{{.contact.attributes.n}} & {{.contact.email}}", Text: "Hi {{.contact.name}},\n{{index .contact.attributes \"plan\"}}\n{{unsubscribe_url}} {{postal_address}}"}, 1},
		{Template{Subject: "{{ .contact.name -}} ! {{- .contact.email }}", HTML: `<h1>{{.contact.name}}</h1><p>{{.contact.attributes.plan}}<br>{{.contact.email}}</p>` +
			`<ul><li>{{.contact.attributes.html}}</li></ul>`}, 3},
		{Template{Subject: "{{.contact.first_name | default \"there\"}}", HTML: `<a href="{{.contact.attributes.url}}">x</a><p>{{.contact.name}}</p>`}, 0},
		{Template{Subject: "plain", HTML: `<p title="{{.contact.name}}">{{if .contact.name}}{{.contact.name}}{{end}}</p>`}, 1},
		{Template{Subject: "{{.top}} {{.contact}}", HTML: `<p>{{.top}}</p><p>{{.nested.a.b}}</p>`}, 2},
	}
	contact := func(name, email string, attrs map[string]any) map[string]any {
		return normalizeMap(map[string]any{"contact": map[string]any{"name": name, "first_name": strings.Fields(name + " x")[0],
			"email": email, "attributes": attrs}, "top": "T", "nested": map[string]any{"a": map[string]any{"b": "deep"}}})
	}
	datas := []map[string]any{
		contact("Ada Lovelace", "ada@example.com", map[string]any{"plan": "pro", "n": 3.5, "url": "https://a.example/x?y=1&z=2",
			"html": "a < b & c"}),
		contact(`"><script>alert(1)</script>`, "b@example.com", map[string]any{"plan": "<b>bold</b>", "n": json.Number("12"),
			"html": "x\x00y"}),
		contact("  spaced  ", "c@example.com", map[string]any{"plan": "", "n": nil}),
		contact("Zoë & Ünïcode ✓", "d@example.com", map[string]any{"plan": "tab\there", "n": 1e21, "html": "'quotes\" &amp; \r\n"}),
		contact("https://unsubscribe.herald.invalid/", "e@example.com", map[string]any{"plan": "[[herald postal address]]",
			"n": []any{1.0}, "html": map[string]any{"k": "v"}}),
		contact("Line\nbreak", "f@example.com", map[string]any{"plan": strings.Repeat("long ", 200)}),
		{"contact": map[string]any{"name": "no other keys"}},
		{"contact": map[string]string{"name": "a map of strings", "email": "x", "first_name": "y"}},
		{},
	}
	for i, tc := range tpls {
		c, err := Compile(tc.tpl)
		if err != nil {
			t.Fatalf("template %d: %v", i, err)
		}
		if got := flatParts(t, c, datas[0]); got != tc.flat {
			t.Errorf("template %d: %d parts printed flat, want %d", i, got, tc.flat)
		}
		for j, data := range datas {
			sameAsTemplate(t, "template "+string(rune('0'+i))+" data "+string(rune('0'+j)), c, data)
		}
	}
}

// TestFlatOutputLimit: a flat part whose output would exceed MaxRenderedBytes leaves the
// template to report it.
func TestFlatOutputLimit(t *testing.T) {
	c, err := Compile(Template{Subject: "s", Text: "{{.a}}{{.a}}{{.a}}"})
	if err != nil {
		t.Fatal(err)
	}
	if c.flatText == nil {
		t.Fatal("the text part is not flat")
	}
	data := map[string]any{"a": strings.Repeat("x", MaxRenderedBytes/3+1)}
	if _, ok := c.flatText.execute(&renderData{m: data}); ok {
		t.Fatal("flat output over the limit")
	}
	sameAsTemplate(t, "over the limit", c, data)
	data["a"] = strings.Repeat("x", MaxRenderedBytes/3)
	sameAsTemplate(t, "under the limit", c, data)
}

// FuzzFlatMatchesTemplate renders fuzzed values through flat parts and through the templates.
func FuzzFlatMatchesTemplate(f *testing.F) {
	f.Add("Ada Lovelace", "pro", "ada@example.com")
	f.Add(`"><script>x</script>`, "&amp; &x; &#0;", "\x00")
	f.Add(" lead", "trail ", "\r\n")
	f.Add("", "[[herald postal address]]", "https://view-online.herald.invalid/")
	c, err := Compile(Template{Subject: "Hi {{.contact.name}} {{.contact.email}}",
		HTML: `<p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p><h2>{{.contact.email}}</h2>` +
			`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`})
	if err != nil {
		f.Fatal(err)
	}
	if c.flatFastHTML == nil || c.flatFastText == nil || c.flatSubject == nil {
		f.Fatal("the template is not flat")
	}
	f.Fuzz(func(t *testing.T, name, plan, email string) {
		data := normalizeMap(map[string]any{"contact": map[string]any{"name": name, "email": email,
			"attributes": map[string]any{"plan": plan}}})
		sameAsTemplate(t, "fuzz", c, data)
	})
}

// testContacts have names and attributes of every shape ContactData handles.
func testContacts() []contacts.Contact {
	return []contacts.Contact{
		{ExternalID: "crm-1", Email: "ada@example.com", Name: "Ada Lovelace", Locale: "en-GB", Timezone: "Europe/London",
			Attributes: map[string]any{"plan": "pro", "n": 3.5, "big": 1e21, "f32": float32(0.1), "none": nil,
				"list": []any{1.0, nil, "x"}, "obj": map[string]any{"k": 2e21}, "num": json.Number("12"), "b": true,
				"html": "<b>x</b>", "amp": "a & b"}},
		{Email: "b@example.com", Name: "  \u00a0Zoë\u2003Ünïcode ", Attributes: map[string]any{"plan": `"><script>alert(1)</script>`}},
		{Email: "c@example.com", Name: "\tsingle", Attributes: nil},
		{Email: "d@example.com", Name: "", Attributes: map[string]any{}},
		{Email: "e@example.com", Name: " \xff\xfe bad utf8", Attributes: map[string]any{"plan": "\x00"}},
		{Email: "f@example.com", Name: "   ", Attributes: map[string]any{"plan": " lead and trail "}},
	}
}

// TestContactValueMatchesContactData: the values flat parts read from a contact's fields are
// ContactData's, for every key it sets and every attribute, and other keys are left to the map.
func TestContactValueMatchesContactData(t *testing.T) {
	for i, p := range testContacts() {
		m := ContactData(p)
		for k, want := range m {
			got, ok := contactValue(&p, &flatStep{keys: []string{"contact", k}})
			if k == "attributes" {
				if ok {
					t.Errorf("contact %d: attributes read as a whole", i)
				}
				for ak, want := range want.(map[string]any) {
					for _, step := range []flatStep{{keys: []string{"contact", "attributes", ak}},
						{keys: []string{"contact", "attributes"}, index: true, key: ak}} {
						got, ok := contactValue(&p, &step)
						if !ok || !reflect.DeepEqual(got, want) {
							t.Errorf("contact %d: attribute %s = %#v, %v; ContactData has %#v", i, ak, got, ok, want)
						}
					}
				}
				continue
			}
			if !ok || !reflect.DeepEqual(got, want) {
				t.Errorf("contact %d: %s = %#v, %v; ContactData has %#v", i, k, got, ok, want)
			}
		}
		for _, step := range []flatStep{{keys: []string{"contact"}}, {keys: []string{"contact", "missing"}},
			{keys: []string{"other", "name"}}, {keys: []string{"contact", "name", "x"}}, {keys: []string{"contact", "name"}, index: true, key: "x"},
			{keys: []string{"contact", "attributes", "missing"}}, {keys: []string{"contact", "attributes", "obj", "k"}},
			{keys: []string{"contact", "attributes", "plan"}, index: true, key: "x"}} {
			if v, ok := contactValue(&p, &step); ok {
				t.Errorf("contact %d: %+v read as %#v", i, step, v)
			}
		}
	}
}

// TestRenderContactFlatMatchesTemplate: RenderContact, reading the contact's fields in flat
// parts, renders what the templates render with ContactData's map, errors included.
func TestRenderContactFlatMatchesTemplate(t *testing.T) {
	tpls := []Template{
		{Subject: "News for {{.contact.first_name}}", HTML: `<p>Hello {{.contact.name}} ({{index .contact.attributes "plan"}})</p>` +
			`<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p><p>{{postal_address}}</p>`},
		{Subject: "{{.contact.email}} {{.contact.external_id}} {{.contact.locale}} {{.contact.timezone}}",
			Text: "{{.contact.attributes.n}} {{.contact.attributes.num}} {{index .contact.attributes \"big\"}} {{.contact.attributes.none}}"},
		{Subject: "{{.contact.attributes.plan}}", HTML: `<p>{{.contact.attributes.html}} {{.contact.attributes.amp}} {{.contact.attributes.b}}</p>` +
			`<p>{{index .contact.attributes "f32"}}</p><p>{{.contact.attributes.obj.k}}</p>`},
		{Subject: "{{.contact.missing}}", HTML: `<p>{{.contact.name}}</p>`},
		{Subject: "s", HTML: `<p>{{index .contact.attributes "absent"}}</p><p>{{.contact.first_name}}</p>`},
		{Subject: "{{.contact.name}}", HTML: `<p>{{.contact.attributes.list}}</p>`},
	}
	for i, tpl := range tpls {
		c, err := Compile(tpl)
		if err != nil {
			t.Fatalf("template %d: %v", i, err)
		}
		for j, p := range testContacts() {
			got, err := c.RenderContact(p)
			want, wantErr := withoutFlat(c).Render(map[string]any{"contact": ContactData(p)})
			if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
				t.Fatalf("template %d, contact %d: error %v, template's %v", i, j, err, wantErr)
			}
			if got != want {
				t.Fatalf("template %d, contact %d:\n got %+v\nwant %+v", i, j, got, want)
			}
		}
	}
}
