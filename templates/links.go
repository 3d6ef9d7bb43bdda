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
// address, cannot land in a URL attribute (see PlaceholderPostalAddress).
func (r Rendered) WithLinks(l Links) Rendered {
	lines := addressLines(l.PostalAddress)
	if hasPlaceholder(r.Subject) {
		oneLine := strings.NewReplacer("\r", " ", "\n", " ")
		r.Subject = strings.NewReplacer(
			PlaceholderUnsubscribe, oneLine.Replace(l.Unsubscribe),
			PlaceholderPreferences, oneLine.Replace(l.Preferences),
			PlaceholderViewOnline, oneLine.Replace(l.ViewOnline),
			PlaceholderPostalAddress, strings.Join(lines, ", "),
		).Replace(r.Subject)
	}
	if hasPlaceholder(r.HTML) {
		escaped := make([]string, len(lines))
		for i, line := range lines {
			escaped[i] = html.EscapeString(line)
		}
		r.HTML = strings.NewReplacer(
			PlaceholderUnsubscribe, html.EscapeString(l.Unsubscribe),
			PlaceholderPreferences, html.EscapeString(l.Preferences),
			PlaceholderViewOnline, html.EscapeString(l.ViewOnline),
			PlaceholderPostalAddress, strings.Join(escaped, "<br>"),
		).Replace(r.HTML)
	}
	if hasPlaceholder(r.Text) {
		r.Text = strings.NewReplacer(
			PlaceholderUnsubscribe, l.Unsubscribe,
			PlaceholderPreferences, l.Preferences,
			PlaceholderViewOnline, l.ViewOnline,
			PlaceholderPostalAddress, strings.Join(lines, "\n"),
		).Replace(r.Text)
	}
	return r
}

// hasPlaceholder is a fast test that spares building a replacer for a part with no placeholder
// (most subjects).
func hasPlaceholder(s string) bool {
	return strings.Contains(s, ".herald.invalid/") || strings.Contains(s, PlaceholderPostalAddress)
}

// addressLines splits a postal address into its non-empty lines, each trimmed.
func addressLines(addr string) []string {
	var out []string
	for line := range strings.Lines(strings.ReplaceAll(addr, "\r", "\n")) {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
