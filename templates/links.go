package templates

import (
	"html"
	"strings"
)

// Placeholders printed by the link functions. A campaign compiles a version once and renders it
// for every recipient, so a recipient's own links cannot be template functions bound per render:
// the functions print these fixed strings and Rendered.WithLinks swaps in the real values.
//
// The three URLs are under the reserved .invalid TLD (RFC 2606), so they are never reachable by
// accident, and they are plain https URLs that html/template's URL filter and normaliser, the
// sanitiser and html2text all leave as they are, in an href as in text. The postal address
// placeholder holds spaces, which html/template percent-encodes in a URL attribute: data that
// prints it inside an href never matches it there, so the address text cannot become a link.
const (
	PlaceholderUnsubscribe   = "https://unsubscribe.herald.invalid/"
	PlaceholderPreferences   = "https://preferences.herald.invalid/"
	PlaceholderViewOnline    = "https://view-online.herald.invalid/"
	PlaceholderPostalAddress = "[[herald postal address]]"
)

// linkFuncs are the template functions printing the placeholders.
func linkFuncs() map[string]any {
	return map[string]any{
		"unsubscribe_url": func() string { return PlaceholderUnsubscribe },
		"preferences_url": func() string { return PlaceholderPreferences },
		"view_online_url": func() string { return PlaceholderViewOnline },
		"postal_address":  func() string { return PlaceholderPostalAddress },
	}
}

// Links are one recipient's values for the placeholders. The URLs must be absolute http(s) URLs
// (Herald's own: BASE/u/TOKEN); the postal address is plain text and may span lines. An empty
// value replaces its placeholder with nothing.
type Links struct {
	Unsubscribe   string
	Preferences   string
	ViewOnline    string
	PostalAddress string
}

// WithLinks returns r with the placeholders replaced by l's values, in one pass per part. In the
// HTML every value is HTML-escaped and the address's line breaks become <br>; in the text the
// address keeps its lines; in the subject it is one line, its lines joined with ", ".
//
// Data can print a placeholder too ({{.name}} holding "https://unsubscribe.herald.invalid/"); it
// is then replaced like the template's own. That is harmless: the values are the recipient's own
// links and the sender's address, escaped for HTML, and the one value that is not a URL, the
// address, cannot land in a URL attribute (see PlaceholderPostalAddress); in any other attribute
// it is escaped text.
func (r Rendered) WithLinks(l Links) Rendered {
	lines := addressLines(l.PostalAddress)
	if hasPlaceholder(r.Subject) {
		oneLine := strings.NewReplacer("\r", " ", "\n", " ")
		r.Subject = replacePlaceholders(r.Subject, [4]string{
			oneLine.Replace(l.Unsubscribe), oneLine.Replace(l.Preferences), oneLine.Replace(l.ViewOnline),
			strings.Join(lines, ", "),
		})
	}
	if hasPlaceholder(r.HTML) {
		r.HTML = replacePlaceholders(r.HTML, [4]string{
			html.EscapeString(l.Unsubscribe), html.EscapeString(l.Preferences), html.EscapeString(l.ViewOnline),
			addressHTML(lines),
		})
	}
	if hasPlaceholder(r.Text) {
		r.Text = replacePlaceholders(r.Text, [4]string{l.Unsubscribe, l.Preferences, l.ViewOnline, strings.Join(lines, "\n")})
	}
	return r
}

// addressHTML is the address's lines HTML-escaped and joined with <br>. A one-line address, the
// common case, is escaped without building anything more.
func addressHTML(lines []string) string {
	if len(lines) == 1 {
		return html.EscapeString(lines[0])
	}
	escaped := make([]string, len(lines))
	for i, line := range lines {
		escaped[i] = html.EscapeString(line)
	}
	return strings.Join(escaped, "<br>")
}

// placeholders in the order of the values replacePlaceholders takes.
var placeholders = [4]string{PlaceholderUnsubscribe, PlaceholderPreferences, PlaceholderViewOnline, PlaceholderPostalAddress}

// replacePlaceholders replaces every placeholder in s with its value in one pass, left to right;
// replaced text is not scanned again. It finds each placeholder's next occurrence with
// strings.Index, which is several times faster on a 10 KB newsletter than a strings.Replacer
// with these four multi-byte keys (which walks a trie byte by byte).
func replacePlaceholders(s string, values [4]string) string {
	var next [4]int
	for i, p := range placeholders {
		next[i] = strings.Index(s, p)
	}
	var b strings.Builder
	b.Grow(len(s) + 256)
	pos := 0
	for {
		k := -1
		for i, n := range next {
			if n >= 0 && (k < 0 || n < next[k]) {
				k = i
			}
		}
		if k < 0 {
			break
		}
		b.WriteString(s[pos:next[k]])
		b.WriteString(values[k])
		pos = next[k] + len(placeholders[k])
		// Placeholders cannot overlap one another, so an occurrence found earlier that now lies
		// before pos cannot exist; only the consumed one is looked up again.
		if n := strings.Index(s[pos:], placeholders[k]); n >= 0 {
			next[k] = pos + n
		} else {
			next[k] = -1
		}
	}
	b.WriteString(s[pos:])
	return b.String()
}

// hasPlaceholder is a fast test that spares building a replacer for a part with no placeholder
// (most subjects).
func hasPlaceholder(s string) bool {
	return strings.Contains(s, ".herald.invalid/") || strings.Contains(s, PlaceholderPostalAddress)
}

// addressLines splits a postal address into its non-empty lines, each trimmed.
func addressLines(addr string) []string {
	if !strings.ContainsAny(addr, "\r\n") {
		// One line, as a campaign's address usually is: no copy with the line breaks unified.
		if line := strings.TrimSpace(addr); line != "" {
			return []string{line}
		}
		return nil
	}
	var out []string
	for line := range strings.Lines(strings.ReplaceAll(addr, "\r", "\n")) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
