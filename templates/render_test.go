package templates_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"herald/templates"
)

func TestRenderEscapesDataInHTML(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{
		Subject: "Hello {{.name}}",
		HTML:    `<p>Hi {{.name}}</p><a href="{{.url}}" title="{{.name}}">open</a>`,
	}
	out, err := templates.Render(tpl, map[string]any{
		"name": `<script>alert(1)</script>"><img src=x onerror=alert(2)>`,
		"url":  "javascript:alert(3)",
	})
	if err != nil {
		t.Fatal(err)
	}
	low := strings.ToLower(out.HTML)
	for _, bad := range []string{"<script", "<img", "javascript:"} {
		if strings.Contains(low, bad) {
			t.Errorf("HTML = %q contains %q", out.HTML, bad)
		}
	}
	checkInert(t, "rendered", out.HTML)
	if !strings.Contains(out.HTML, "&lt;script&gt;") {
		t.Errorf("HTML = %q: the data should appear escaped", out.HTML)
	}
	if out.Subject != `Hello <script>alert(1)</script>"><img src=x onerror=alert(2)>` {
		t.Errorf("Subject = %q: plain text, not HTML-escaped", out.Subject)
	}
}

func TestRenderKeepsActionsInAttributes(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{
		Subject: "Order {{.order.id}}",
		HTML: `<table bgcolor="#ffffff" cellpadding="4"><tr><td style="color: #333333; padding: 8px">` +
			`{{if eq .status "paid"}}Paid{{else}}Due{{end}}: <a href="{{.url}}">view order {{.order.id}}</a>` +
			`</td></tr></table>`,
	}
	out, err := templates.Render(tpl, map[string]any{
		"status": "paid",
		"url":    "https://shop.example/orders/12345678?ref=mail&x=1",
		"order":  map[string]any{"id": float64(12345678)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`href="https://shop.example/orders/12345678?ref=mail&amp;x=1"`,
		"Paid:", "view order 12345678", `bgcolor="#ffffff"`, `cellpadding="4"`, "color: #333333; padding: 8px",
	} {
		if !strings.Contains(out.HTML, want) {
			t.Errorf("HTML = %q lacks %q", out.HTML, want)
		}
	}
	if out.Subject != "Order 12345678" {
		t.Errorf("Subject = %q (numbers must print as written)", out.Subject)
	}
}

func TestRenderRefusesLineBreakInSubject(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{Subject: "Hi {{.name}}", Text: "body"}
	for _, name := range []string{"x\r\nBcc: victim@example.com", "x\nBcc: v@example.com", "x\rY"} {
		_, err := templates.Render(tpl, map[string]any{"name": name})
		var pe *templates.PartError
		if !errors.Is(err, templates.ErrSubjectLineBreak) || !errors.As(err, &pe) || pe.Part != "subject" {
			t.Errorf("Render with name %q: err = %v, want ErrSubjectLineBreak in part subject", name, err)
		}
	}
}

func TestRenderMissingKeyNamesThePart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		part string
		tpl  templates.Template
	}{
		{"subject", templates.Template{Subject: "Hi {{.frist_name}}", Text: "x"}},
		{"html", templates.Template{Subject: "Hi", HTML: "<p>{{.frist_name}}</p>"}},
		{"text", templates.Template{Subject: "Hi", Text: "Dear {{.customer.frist_name}}"}},
	} {
		_, err := templates.Render(tc.tpl, map[string]any{"first_name": "Ann", "customer": map[string]any{}})
		var pe *templates.PartError
		if !errors.As(err, &pe) || pe.Part != tc.part || !strings.Contains(err.Error(), "frist_name") {
			t.Errorf("%s: err = %v, want a PartError for %s naming frist_name", tc.part, err, tc.part)
		}
	}
}

func TestRenderGeneratesTextFromHTML(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{
		Subject: "Welcome",
		HTML:    `<h1>Welcome, {{.name}}</h1><p>Confirm your address: <a href="{{.url}}">confirm</a></p><script>x()</script>`,
	}
	out, err := templates.Render(tpl, map[string]any{"name": "Ann & Bob", "url": "https://app.example/confirm?t=abc"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Welcome, Ann & Bob", "confirm <https://app.example/confirm?t=abc>"} {
		if !strings.Contains(out.Text, want) {
			t.Errorf("Text = %q lacks %q", out.Text, want)
		}
	}
	if strings.Contains(out.Text, "<h1") || strings.Contains(out.Text, "<p") || strings.Contains(out.Text, "x()") {
		t.Errorf("Text = %q holds markup or script", out.Text)
	}
	if strings.Contains(out.Text, "\r") {
		t.Errorf("Text = %q: want LF line breaks", out.Text)
	}
}

func TestRenderTextPartAndFunctions(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{
		Subject: `{{upper .code}} due {{date "2 Jan 2006" .due}}`,
		HTML:    `<p>{{.nick | default "there"}}</p>`,
		Text:    `Hi {{.nick | default "there"}}, {{lower .code}} {{date "2006-01-02 15:04" .at}} [{{.none}}] {{.count}} {{range .items}}<{{.}}>{{end}}`,
	}
	at := time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC)
	out, err := templates.Render(tpl, map[string]any{
		"code": "Inv-7", "due": "2026-12-01", "nick": "", "at": at, "none": nil, "count": 0.5,
		"items": []any{"a", "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "INV-7 due 1 Dec 2026"; out.Subject != want {
		t.Errorf("Subject = %q, want %q", out.Subject, want)
	}
	if want := "Hi there, inv-7 2026-03-04 05:06 [] 0.5 <a><b>"; out.Text != want {
		t.Errorf("Text = %q, want %q", out.Text, want)
	}
	if want := "<p>there</p>"; out.HTML != want {
		t.Errorf("HTML = %q, want %q", out.HTML, want)
	}
	if _, err := templates.Render(tpl, map[string]any{"code": "x", "due": "tomorrow", "nick": "", "at": at, "none": nil, "count": 1, "items": nil}); err == nil ||
		!strings.Contains(err.Error(), "tomorrow") {
		t.Errorf("a bad date: err = %v", err)
	}
}

func TestCompileRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, part, want string
		tpl              templates.Template
	}{
		{"subject parse", "subject", "unclosed", templates.Template{Subject: "{{.x", Text: "x"}},
		{"html parse", "html", "function \"nope\" not defined", templates.Template{Subject: "s", HTML: "{{nope .x}}"}},
		{"text parse", "text", "unexpected", templates.Template{Subject: "s", Text: "{{end}}"}},
		{"html escape", "html", "non-text context", templates.Template{Subject: "s", HTML: `<a href="{{.u}}`}},
		{"range number", "text", "{{range}}", templates.Template{Subject: "s", Text: "{{range 1000000000}}{{end}}"}},
		{"range len", "html", "{{range}}", templates.Template{Subject: "s", HTML: `{{range len "abc"}}x{{end}}`}},
		{"range variable", "text", "{{range}}", templates.Template{Subject: "s", Text: "{{$n := 5}}{{range $n}}{{end}}"}},
		{"define", "text", "define", templates.Template{Subject: "s", Text: `{{define "a"}}x{{end}}y`}},
		{"template", "html", "{{template}}", templates.Template{Subject: "s", HTML: `{{template "html" .}}`}},
		{"nested template call", "text", "{{template}}", templates.Template{Subject: "s", Text: `{{if .x}}{{template "z"}}{{end}}`}},
		{"no body", "html", "required", templates.Template{Subject: "s"}},
	} {
		_, err := templates.Compile(tc.tpl)
		var pe *templates.PartError
		if !errors.As(err, &pe) || pe.Part != tc.part || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want a PartError for %s containing %q", tc.name, err, tc.part, tc.want)
		}
	}
	if _, err := templates.Compile(templates.Template{Subject: "s", Text: "{{range $i, $x := .items}}{{$i}}{{range $x.sub}}{{.}}{{end}}{{end}}{{range $.more}}{{end}}"}); err != nil {
		t.Errorf("ranges over data refused: %v", err)
	}
}

func TestRenderCapsOutput(t *testing.T) {
	t.Parallel()
	tpl := templates.Template{Subject: "s", Text: "{{range .a}}{{range $.a}}{{$.big}}{{end}}{{end}}"}
	a := make([]any, 2000)
	_, err := templates.Render(tpl, map[string]any{"a": a, "big": strings.Repeat("x", 1000)})
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("err = %v, want the output limit", err)
	}
}

func TestDecodeData(t *testing.T) {
	t.Parallel()
	d, err := templates.DecodeData([]byte(`{"id": 12345678901234567890, "n": null}`))
	if err != nil {
		t.Fatal(err)
	}
	out, err := templates.Render(templates.Template{Subject: "#{{.id}}{{.n}}", Text: "x"}, d)
	if err != nil || out.Subject != "#12345678901234567890" {
		t.Fatalf("Subject = %q, %v", out.Subject, err)
	}
	for _, bad := range []string{`[1]`, `"x"`, `{"a":1} {}`, `{`} {
		if _, err := templates.DecodeData([]byte(bad)); err == nil {
			t.Errorf("DecodeData(%s) accepted", bad)
		}
	}
	if d, err := templates.DecodeData(nil); err != nil || d == nil {
		t.Errorf("DecodeData(nil) = %v, %v", d, err)
	}
}
