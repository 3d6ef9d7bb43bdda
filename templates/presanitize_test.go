package templates

import (
	"encoding/json"
	htmltemplate "html/template"
	"strings"
	"testing"
)

// slowRender renders c as every template was rendered before pre-sanitising: execute the HTML
// as written, then Sanitize, then html2text.
func slowRender(c *Compiled, data map[string]any) (Rendered, error) {
	slow := *c
	slow.fast = nil
	return slow.Render(data)
}

// sameAsSlow checks the property the fast path rests on: its HTML is a fixed point of Sanitize
// (so it is exactly as safe as sanitising every render) and equals, byte for byte, what the
// per-render sanitiser makes of the same template and data; the text part equals html2text of
// that HTML; errors are the same.
func sameAsSlow(t *testing.T, name string, c *Compiled, data map[string]any) {
	t.Helper()
	got, err := c.Render(data)
	want, wantErr := slowRender(c, data)
	if (err == nil) != (wantErr == nil) || (err != nil && err.Error() != wantErr.Error()) {
		t.Fatalf("%s: err = %v, slow path err = %v", name, err, wantErr)
	}
	if err != nil {
		return
	}
	if again := Sanitize(got.HTML); again != got.HTML {
		t.Fatalf("%s: fast HTML is not a fixed point of Sanitize:\n%q\n%q", name, got.HTML, again)
	}
	if got.HTML != want.HTML {
		t.Fatalf("%s: fast HTML differs from the slow path:\n%q\n%q", name, got.HTML, want.HTML)
	}
	if got.Text != want.Text {
		t.Fatalf("%s: fast text differs from the slow path:\n%q\n%q", name, got.Text, want.Text)
	}
}

// hostileValues are data values for every action of the nasty templates.
var hostileValues = []any{
	"Ada", "", " ", "a  b\n c", "<script>alert(1)</script>", `"><img src=x onerror=alert(1)>`,
	"javascript:alert(1)", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "data:text/html,<b>x</b>",
	"vbscript:msgbox(1)", "https://ok.example/p?a=1&b=2#f", "%zz", "http://[::1", "https://x.example/a b",
	"a+b", "x\r\ny\rz", "nul\x00byte", "\ufdd0\uffff\ufffd", "&amp;&lt;&#43;", "{{.secret}}", "href=evil",
	"red", "#fff", "50%", "expression(alert(1))", "red; background: url(javascript:x)", "mailto:a@b.example",
	"/relative/path", "\xff\xfe invalid", "hrldqaq", "\u2028line\u2029", "x\u200by", "x\u0085y",
	htmltemplate.HTML("<b>bold</b><script>alert(1)</script>"), htmltemplate.HTML("plain &amp; simple"),
	htmltemplate.URL("javascript:alert(1)"), htmltemplate.HTMLAttr(`onclick="alert(1)"`),
	json.Number("12345678"), true, 3.5, nil,
}

func hostileData(v any) map[string]any {
	d := map[string]any{"items": []any{v, "x"}, "secret": "SECRET"}
	for _, k := range []string{"a", "b", "u", "c", "t", "w", "p", "q", "f", "ev", "attr"} {
		d[k] = v
	}
	return d
}

func TestPresanitizeNastyTemplates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		html string
		fast bool // whether the template must take the fast path
	}{
		{"plain", `<p>Hello {{.a}}, <a href="{{.u}}" title="{{.t}}">link</a></p>`, true},
		{"comment joins a script tag", `<scr{{/* */}}ipt>alert(1)</script><p>{{.a}}</p>`, true}, // sanitised away at Compile
		{"comment joins text", `<p>x{{/* c */}}y {{.a}}</p>`, true},
		{"entity makes braces", `<p>&#123;&#123;.secret&#125;&#125; {{.a}}</p>`, false},
		{"entity tricks", `<p>&lt;script&gt;{{.a}}&#x3C;/script&#x3E; &amp;{{.b}}&amp</p>`, true},
		{"href from data", `<a href="{{.u}}">x</a>`, true},
		{"href parts", `<a href="https://x.example/{{.p}}?q={{.q}}#{{.f}}">x</a>`, false}, // one action per value
		{"href path", `<a href="https://x.example/{{.p}}">x</a>`, true},
		{"href query", `<a href="https://x.example/?q={{.q}}&amp;r=1">x</a>`, true},
		{"unquoted href", `<a href={{.u}}>x</a>`, true},
		{"img", `<img alt="{{.a}}" src="{{.u}}" width="{{.w}}">`, false},
		{"img alt and src", `<img alt="{{.a}}" src="{{.u}}">`, true},
		{"style from data", `<p style="color: {{.c}}">x</p>`, false},
		{"style block", `<style>p{color:{{.c}}}</style><p>x</p>`, false},
		{"svg script", `<svg><script>{{.a}}</script></svg><p>{{.b}}</p>`, false},
		{"event handler", `<img src="https://i.example/x.png" onerror="{{.ev}}">`, false},
		{"action in a tag", `<a href="https://x.example/" {{.attr}}>x</a>`, false},
		{"action in an attribute name", `<img src="https://i.example/x.png" on{{.ev}}="alert(1)">`, false},
		{"textarea", `<textarea>{{.a}}</textarea>`, true},
		{"title", `<title>{{.a}}</title><p>x</p>`, false},
		{"noscript", `<noscript>{{.a}}</noscript>`, false},
		{"html comment", `<!-- {{.a}} --><p>x</p>`, false},
		{"iframe srcdoc", `<iframe srcdoc="{{.a}}"></iframe>`, false},
		{"bgcolor and width", `<table><tr><td bgcolor="{{.c}}">x</td></tr></table>`, true},
		{"class", `<p class="{{.c}}">x</p>`, true},
		{"two actions in a value", `<p title="{{.a}} {{.b}}">x</p>`, false},
		{"if in a value", `<p title="{{if .a}}yes{{end}}">x</p>`, false},
		{"link text attribute", `<a href="{{.u}}" title="{{.t}}">x</a>`, true},
		{"if", `{{if .a}}<p>{{.a}}</p>{{else}}<p>none</p>{{end}}<p>{{.b}}</p>`, true},
		{"range", `<ul>{{range $i, $x := .items}}<li>{{$i}}: {{$x}}</li>{{end}}</ul>`, true},
		{"with", `{{with .a}}<b>{{.}}</b>{{end}}`, true},
		{"branch opens a tag", `<p>{{if .a}}<b>{{end}}bold?</b></p>`, true},
		{"dropped start tag in a branch", `{{if .a}}<a>{{else}}<a href="https://h.example/">{{end}}x</a>`, false},
		{"dropped start tag in a loop", `{{range .items}}<a>{{end}}x</a>`, false},
		{"end tag before its start in a loop", `{{range .items}}</a>y<a>{{end}}`, false},
		{"branch in a dropped element", `<object>{{if .a}}x{{end}}</object><p>{{.b}}</p>`, false},
		{"unclosed tags", `<p><b>{{.a}}<i>{{.b}}`, true},
		{"nul bytes", "<p>a\x00b {{.a}}</p>", true},
		{"trim markers", "<p>  {{- .a -}}  </p><p>x {{- /* c */ -}} y {{.b}}</p>", true},
		{"braces in strings", `<p>{{printf "%s}}%s" .a "{{"}}</p>`, true},
		{"token in source", `<p>hrldqaq {{.a}}</p>`, false},
		{"variable", `{{$n := .a}}<p>{{$n}}</p>`, true},
		{"link functions", `<a href="{{unsubscribe_url}}">U</a><p>{{postal_address}}</p>`, true},
		{"many attributes", `<td ` + strings.Repeat(`align="left" `, 300) + `title="{{.t}}">x</td>`, true},
	} {
		c, err := Compile(Template{Subject: "s", HTML: tc.html})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if c.Presanitized() != tc.fast {
			t.Errorf("%s: Presanitized() = %v, want %v", tc.name, c.Presanitized(), tc.fast)
		}
		for _, v := range hostileValues {
			sameAsSlow(t, tc.name, c, hostileData(v))
		}
	}
}

// TestPresanitizeRefusedByCompile: templates that try to close an attribute in one branch and
// not the other do not compile at all (html/template requires every branch to end in the same
// context), so neither path ever renders them.
func TestPresanitizeRefusedByCompile(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`<a title="{{if .a}}">{{else}}<b title="{{end}}<script>alert(1)</script>">x</a>`,
		`<a href="{{.u}}`,
		`{{if .a}}<script>{{end}}alert(1)</script>`,
		`<p title="{{if .a}}x"{{end}}>y</p>`,
	} {
		if _, err := Compile(Template{Subject: "s", HTML: src}); err == nil {
			t.Errorf("Compile(%q) accepted", src)
		}
	}
}

// TestPresanitizeFallsBackPerValue: on the fast path, a value the sanitiser would change stops
// the fast render and that message takes the per-render path, with the same result.
func TestPresanitizeFallsBackPerValue(t *testing.T) {
	t.Parallel()
	c, err := Compile(Template{Subject: "s", HTML: `<p>{{.a}}</p><a href="{{.u}}">x</a><img alt="{{.w}}" src="https://i.example/x.png"><td bgcolor="{{.c}}">y</td>`})
	if err != nil || !c.Presanitized() {
		t.Fatalf("Compile: %v, fast %v", err, c.Presanitized())
	}
	for _, d := range []map[string]any{
		{"a": htmltemplate.HTML("<b>x</b>"), "u": "https://ok.example/", "w": "50%", "c": "red"},
		{"a": "x", "u": "https://ok.example/%zz", "w": "50%", "c": "red"},
		{"a": "x", "u": "https://ok.example/", "w": `a "quote"`, "c": "red"},
		{"a": "x", "u": "https://ok.example/", "w": "50", "c": "red;x"},
	} {
		if err := c.fast.html.Execute(&strings.Builder{}, normalizeMap(d)); err == nil {
			t.Errorf("data %v: the fast template did not stop", d)
		}
		sameAsSlow(t, "per value", c, d)
	}
}

// TestPresanitizeExistingTemplates: the templates of the other tests render the same on both
// paths.
func TestPresanitizeExistingTemplates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		html string
		data map[string]any
	}{
		{`<p>Hi {{.name}}</p><a href="{{.url}}" title="{{.name}}">open</a>`,
			map[string]any{"name": `<script>alert(1)</script>"><img src=x onerror=alert(2)>`, "url": "javascript:alert(3)"}},
		{`<table bgcolor="#ffffff" cellpadding="4"><tr><td style="color: #333333; padding: 8px">` +
			`{{if eq .status "paid"}}Paid{{else}}Due{{end}}: <a href="{{.url}}">view order {{.order.id}}</a></td></tr></table>`,
			map[string]any{"status": "paid", "url": "https://shop.example/orders/12345678?ref=mail&x=1", "order": map[string]any{"id": 12345678.0}}},
		{`<h1>Welcome, {{.name}}</h1><p>Confirm your address: <a href="{{.url}}">confirm</a></p><script>x()</script>`,
			map[string]any{"name": "Ann & Bob", "url": "https://app.example/confirm?t=abc"}},
		{`<p>{{.nick | default "there"}}</p>`, map[string]any{"nick": ""}},
		{`<p>Hi</p><a href="{{unsubscribe_url}}">Unsubscribe</a> <a href='{{preferences_url}}'>Preferences</a> ` +
			`<a href={{view_online_url}}>View online</a><p>{{unsubscribe_url}}</p><p>{{postal_address}}</p>`, nil},
		{`<p>{{.name}}</p><a href="{{.url}}">a</a><a href="{{.addr}}">b</a><img alt="{{.addr}}" src="https://i.example/x.png">` +
			`<a href={{.addr}}>c</a><a href="https://site.example/?next={{.url}}">d</a>`,
			map[string]any{"name": PlaceholderUnsubscribe, "url": PlaceholderUnsubscribe, "addr": PlaceholderPostalAddress}},
	} {
		c, err := Compile(Template{Subject: "s", HTML: tc.html})
		if err != nil {
			t.Fatal(err)
		}
		if !c.Presanitized() {
			t.Errorf("%q is not pre-sanitised", tc.html)
		}
		sameAsSlow(t, tc.html, c, tc.data)
	}
}

func FuzzPresanitize(f *testing.F) {
	for _, s := range []string{
		`<p>Hello {{.a}}</p><a href="{{.b}}">x</a>`,
		`<scr{{/* */}}ipt>alert(1)</script>{{.a}}`,
		`<a title="{{if .a}}">{{else}}<b title="{{end}}<script>alert(1)</script>">x</a>`,
		`{{if .a}}<a>{{else}}<a href="https://h.example/">{{end}}x</a>`,
		`{{range .items}}</a>y<a>{{end}}`,
		`<a href="https://x.example/{{.a}}?q={{.b}}">x</a>`,
		`<img src="{{.a}}" alt="{{.b}}"><td width="{{.a}}" bgcolor="{{.b}}">`,
		`<p style="color: {{.a}}">{{.b}}</p><style>{{.a}}</style>`,
		`<svg><script>{{.a}}</script></svg>`,
		`<p>&#123;&#123;.a&#125;&#125; &lt;{{.b}}&gt;</p>`,
		"<p>\x00{{.a}}\r\n{{.b}}</p>",
		`{{with .a}}<b>{{.}}</b>{{else}}<i>{{$.b}}</i>{{end}}`,
		`<ul>{{range .items}}<li>{{.}}</li>{{end}}</ul>`,
	} {
		f.Add(s, "Ada", "https://ok.example/?a=1&b=2")
		f.Add(s, `"><script>alert(1)</script>`, "javascript:alert(1)")
		f.Add(s, "  a\tb  ", "%zz")
	}
	f.Fuzz(func(t *testing.T, src, a, b string) {
		c, err := Compile(Template{Subject: "s", HTML: src})
		if err != nil {
			return
		}
		sameAsSlow(t, src, c, map[string]any{"a": a, "b": b, "items": []any{a, b}})
	})
}
