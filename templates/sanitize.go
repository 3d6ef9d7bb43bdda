package templates

import (
	"regexp"
	"sync"

	"github.com/microcosm-cc/bluemonday"
)

// Sanitize cleans HTML with the email policy: bluemonday's UGC policy (no scripts, iframes,
// forms, event handlers, style blocks, or URLs other than http, https, mailto and relative ones)
// widened for email layout: bgcolor on body and table parts; cellpadding, cellspacing and border
// on tables; align, valign, width and height on cells and images; class everywhere; center and
// font; and inline styles for common layout properties with each value checked. Links are not
// given rel="nofollow". Data: URIs are not allowed (many mail clients block them anyway).
func Sanitize(html string) string {
	return emailPolicy().Sanitize(html)
}

// emailPolicy is built once, on first use; a built bluemonday policy is only read, so it is safe
// for concurrent use.
var emailPolicy = sync.OnceValue(newEmailPolicy)

var (
	colourRE   = regexp.MustCompile(`^(?i)(#[0-9a-f]{3}|#[0-9a-f]{6}|[a-z]{3,20})$`)
	integerRE  = regexp.MustCompile(`^[0-9]{1,4}$`)
	fontFaceRE = regexp.MustCompile(`^[A-Za-z0-9 ,'"_-]{1,200}$`)
	fontSizeRE = regexp.MustCompile(`^[+-]?[1-7]$`)
)

// emailStyles are the CSS properties allowed in style attributes. Each is checked with
// bluemonday's handler for that property, which refuses url(), expression() and the like.
var emailStyles = []string{
	"color", "background-color",
	"font-size", "font-family", "font-weight", "font-style",
	"text-align", "vertical-align", "text-decoration", "text-transform", "line-height", "letter-spacing",
	"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
	"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
	"border", "border-top", "border-right", "border-bottom", "border-left",
	"border-color", "border-width", "border-style", "border-collapse", "border-radius",
	"width", "height", "max-width", "min-width", "display",
}

func newEmailPolicy() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.RequireNoFollowOnLinks(false)

	p.AllowElements("body", "center", "font")
	p.AllowAttrs("bgcolor").Matching(colourRE).OnElements("body", "table", "tr", "td", "th")
	p.AllowAttrs("cellpadding", "cellspacing", "border").Matching(integerRE).OnElements("table")
	p.AllowAttrs("border").Matching(integerRE).OnElements("img")
	p.AllowAttrs("align").Matching(bluemonday.CellAlign).OnElements("table", "tr", "td", "th", "div", "p")
	p.AllowAttrs("valign").Matching(bluemonday.CellVerticalAlign).OnElements("tr", "td", "th", "img")
	p.AllowAttrs("width", "height").Matching(bluemonday.NumberOrPercent).OnElements("table", "td", "th", "img")
	p.AllowAttrs("color").Matching(colourRE).OnElements("font")
	p.AllowAttrs("face").Matching(fontFaceRE).OnElements("font")
	p.AllowAttrs("size").Matching(fontSizeRE).OnElements("font")
	p.AllowStyling() // class, globally
	p.AllowStyles(emailStyles...).Globally()
	return p
}
