package mailer

import (
	"regexp"
	"strings"
	"testing"
)

// TestHTMLFooterPlacement: the footer goes before the last </body> exactly where the regular
// expression (?i)</body\s*> places it (its former implementation), or at the end.
func TestHTMLFooterPlacement(t *testing.T) {
	re := regexp.MustCompile(`(?i)</body\s*>`)
	reference := func(body, link string) string {
		footer := withHTMLFooter("", link)
		if locs := re.FindAllStringIndex(body, -1); len(locs) > 0 {
			at := locs[len(locs)-1][0]
			return body[:at] + footer + body[at:]
		}
		return body + footer
	}
	bodies := []string{
		"", "<p>x</p>", "<html><body><p>x</p></body></html>", "<BODY>x</BODY >", "x</body\t\r\n\f >y</body>z",
		"x</body>y</bodyx>", "x</body\v>", "</body", "</", "<</body>>", "</body></body></body>", "x</ body>",
		"</bod>", "</bodyy>", "a</BoDy>b</p>", "</body>" + strings.Repeat("</p>", 1000), "\xff</body>\xfe",
		"</b\u00f6dy>", "</body\u00a0>", "</\u212aody>", "</body" + strings.Repeat(" ", 500) + ">",
		`<p title="</body>">x</p>`, "<!-- </body> --><p>x</p>",
	}
	for _, link := range []string{"https://h.example/u/tok", `https://h.example/u/"><script>alert(1)</script>`} {
		for _, b := range bodies {
			if got, want := withHTMLFooter(b, link), reference(b, link); got != want {
				t.Errorf("withHTMLFooter(%q):\n got %q\nwant %q", b, got, want)
			}
		}
	}
}
