package templates

import (
	"strings"
	"testing"
	"text/template/parse"
)

// linkCalls counts the actions of a tree that still call a link function.
func linkCalls(n parse.Node) int {
	count := 0
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return 0
		}
		for _, c := range n.Nodes {
			count += linkCalls(c)
		}
	case *parse.ActionNode:
		for _, name := range []string{"unsubscribe_url", "preferences_url", "view_online_url", "postal_address"} {
			if strings.Contains(n.String(), name) {
				count++
			}
		}
	case *parse.IfNode:
		count += linkCalls(n.List) + linkCalls(n.ElseList)
	case *parse.RangeNode:
		count += linkCalls(n.List) + linkCalls(n.ElseList)
	case *parse.WithNode:
		count += linkCalls(n.List) + linkCalls(n.ElseList)
	}
	return count
}

// TestPresanitizeFoldsLinks: in the fast templates, a link function's action is replaced at
// Compile by the text it prints, in the HTML and in the generated text, in branches too; the
// output stays byte for byte the per-render path's, before and after WithLinks, for hostile
// data and hostile link values.
func TestPresanitizeFoldsLinks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		html   string
		remain int // link actions left in the fast templates (not of the folded form)
	}{
		{"href and address", `<p>{{.a}}</p><a href="{{unsubscribe_url}}">U</a><p>{{postal_address}}</p>`, 0},
		{"unquoted href", `<a href={{preferences_url}}>P</a><p>{{postal_address}}</p>`, 0},
		{"every function", `<a href="{{unsubscribe_url}}">U</a> <a href="{{preferences_url}}">P</a> ` +
			`<a href="{{view_online_url}}">V</a><p>{{postal_address}}</p>`, 0},
		{"image source", `<img alt="x" src="{{view_online_url}}"><p>{{.a}}</p>`, 0},
		{"in a branch", `{{if .a}}<a href="{{unsubscribe_url}}">U</a>{{else}}<p>{{postal_address}}</p>{{end}}`, 0},
		{"in a loop", `<ul>{{range .items}}<li>{{.}} <a href="{{unsubscribe_url}}">U</a></li>{{end}}</ul>`, 0},
		{"piped further", `<p>{{postal_address | upper}}</p><a href="{{unsubscribe_url | lower}}">U</a>`, 2},
		{"in printf", `<p>{{printf "%s!" postal_address}}</p>`, 1},
		{"variable", `{{$u := unsubscribe_url}}<a href="{{$u}}">U</a>`, 1},
	} {
		c, err := Compile(Template{Subject: "s", HTML: tc.html})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !c.Presanitized() {
			t.Fatalf("%s: not pre-sanitised", tc.name)
		}
		got := linkCalls(c.fast.html.Tree.Root)
		if c.fast.text != nil {
			got += linkCalls(c.fast.text.Tree.Root)
		}
		if got != tc.remain*2 && !(c.fast.text == nil && got == tc.remain) {
			t.Errorf("%s: %d link actions left in the fast templates, want %d per part:\n%s", tc.name, got, tc.remain,
				c.fast.html.Tree.Root.String())
		}
		for _, v := range hostileValues {
			data := hostileData(v)
			sameAsSlow(t, tc.name, c, data)
			fast, err := c.Render(data)
			if err != nil {
				continue
			}
			slow, _ := slowRender(c, data)
			for _, l := range []Links{
				{Unsubscribe: "https://h.example/u/tok", Preferences: "https://h.example/u/tok", ViewOnline: "https://h.example/v/x",
					PostalAddress: "1 Main St\nSpringfield"},
				{Unsubscribe: `https://h.example/u/"><script>alert(1)</script>`, PostalAddress: "<b>\r\n& Co</b>"},
			} {
				if a, b := fast.WithLinks(l), slow.WithLinks(l); a != b {
					t.Fatalf("%s: WithLinks differs from the slow path:\n%q\n%q", tc.name, a, b)
				}
			}
		}
	}
}
