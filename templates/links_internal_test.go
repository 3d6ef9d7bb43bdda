package templates

import (
	"slices"
	"strings"
	"testing"
)

// TestAddressLinesOneLineShortCut: the one-line short cut of addressLines splits as the general
// path does.
func TestAddressLinesOneLineShortCut(t *testing.T) {
	general := func(addr string) []string {
		var out []string
		for line := range strings.Lines(strings.ReplaceAll(addr, "\r", "\n")) {
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
		return out
	}
	for _, addr := range []string{"", " ", "1 Main Street, Springfield", "  padded\t", "\u00a0nbsp\u2028sep\u00a0",
		"a\nb", "a\r\nb\r", "\n\n", "x\u0085y", "<b>&amp;</b>"} {
		if got, want := addressLines(addr), general(addr); !slices.Equal(got, want) {
			t.Errorf("addressLines(%q) = %q, want %q", addr, got, want)
		}
		lines := addressLines(addr)
		escaped := make([]string, len(lines))
		for i, l := range lines {
			escaped[i] = strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&#34;").Replace(l)
		}
		if got, want := addressHTML(lines), strings.Join(escaped, "<br>"); got != want {
			t.Errorf("addressHTML(%q) = %q, want %q", lines, got, want)
		}
	}
}
