package tracking

import (
	"bytes"
	"html"
	"io"
	"net/url"
	"strings"

	xhtml "golang.org/x/net/html"
)

// maxLinkURL is the longest URL stored (campaign_links.url); a longer one is left untracked.
const maxLinkURL = 4096

// linkEdit is one href value to replace: input[start:end] (the value with its quotes, if any)
// becomes the tracking URL of url.
type linkEdit struct {
	start, end int
	url        string
}

// scan finds the rewritable links of an HTML document and where the pixel goes: the href
// values of <a> and <area> start tags that hold an absolute http(s) URL other than Herald's own
// (isOwn), and the offset of the first </body> end tag (len(doc) when there is none).
//
// It walks the document with golang.org/x/net/html's tokenizer, which knows comments, raw-text
// elements (script, style, title, textarea) and malformed markup as a browser does, and keeps
// the offset of every token from the lengths of their raw text. Inside a start tag it locates the
// attribute values itself (attrSpans, the tokenizer's own rules) and trusts a span only when the
// tokenizer read the same attribute there: anything it cannot match is left as it is.
func scan(doc string, isOwn func(*url.URL) bool) (edits []linkEdit, bodyEnd int) {
	z := xhtml.NewTokenizer(strings.NewReader(doc))
	bodyEnd = -1
	off := 0
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			break // io.EOF; a tag cut short at the end is left as it is
		}
		raw := z.Raw()
		start := off
		off += len(raw)
		if tt != xhtml.EndTagToken && tt != xhtml.StartTagToken && tt != xhtml.SelfClosingTagToken {
			continue
		}
		name, hasAttr := z.TagName()
		if tt == xhtml.EndTagToken {
			if bodyEnd < 0 && string(name) == "body" && sameAt(doc, start, raw) {
				bodyEnd = start
			}
			continue
		}
		if !hasAttr || (string(name) != "a" && string(name) != "area") {
			continue
		}
		href, found := "", false
		for more := true; more && !found; {
			var k, v []byte
			k, v, more = z.TagAttr()
			if string(k) == "href" {
				href, found = string(v), true
			}
		}
		if !found {
			continue
		}
		u, ok := trackable(href, isOwn)
		if !ok || !sameAt(doc, start, raw) {
			continue
		}
		// The span must hold the very value the tokenizer read; anything else stays as it is.
		if sp, ok := hrefSpan(raw); ok && sp.unescaped() == href {
			edits = append(edits, linkEdit{start: start + sp.start, end: start + sp.end, url: u})
		}
	}
	if bodyEnd < 0 {
		bodyEnd = len(doc)
	}
	return edits, bodyEnd
}

// sameAt reports whether doc holds raw at off: a token's offset is the sum of the raw lengths of
// the tokens before it, and this check makes an edit safe even if that ever failed to hold.
func sameAt(doc string, off int, raw []byte) bool {
	return off+len(raw) <= len(doc) && doc[off:off+len(raw)] == string(raw)
}

// trackable returns the URL to store for an href value, if the link is to be tracked: an
// absolute http or https URL, not one of Herald's own. Leading and trailing spaces, which a
// browser ignores, are trimmed; a URL holding control characters, relative URLs, fragments,
// mailto: and tel: links are left alone.
func trackable(href string, isOwn func(*url.URL) bool) (string, bool) {
	s := strings.TrimSpace(href)
	if s == "" || len(s) > maxLinkURL {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	if scheme := strings.ToLower(u.Scheme); scheme != "http" && scheme != "https" {
		return "", false
	}
	if isOwn(u) {
		return "", false
	}
	return s, true
}

// attrSpan is where an attribute value lies in a start tag's raw text: [start, end) covers the
// value and its quotes; quote is the quote character or 0.
type attrSpan struct {
	start, end int
	quote      byte
	raw        string
}

// unescaped is the value as the tokenizer gives it.
func (s attrSpan) unescaped() string {
	if strings.IndexByte(s.raw, '&') < 0 {
		return s.raw
	}
	// The tokenizer's own unescaping of attribute values, through a one-attribute tag.
	z := xhtml.NewTokenizer(strings.NewReader(`<a v="` + strings.ReplaceAll(s.raw, `"`, "&quot;") + `">`))
	z.Next()
	_, v, _ := z.TagAttr()
	return string(v)
}

// hrefSpan finds the first href attribute's value in a start tag's raw text. It is a port of
// the tokenizer's reading of a tag (golang.org/x/net/html readTag, readTagAttrKey and
// readTagAttrVal, after WHATWG HTML 13.2.5), so that it splits the tag as the tokenizer and a
// browser do; the first of duplicate attributes counts, as there.
func hrefSpan(raw []byte) (attrSpan, bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\f' }
	i, n := 1, len(raw)
	skip := func() {
		for i < n && isSpace(raw[i]) {
			i++
		}
	}
	// Tag name: up to a space (consumed) or a '/' or '>' (not consumed).
	for i < n {
		c := raw[i]
		if c == '/' || c == '>' {
			break
		}
		i++
		if isSpace(c) {
			break
		}
	}
	skip()
	for i < n && raw[i] != '>' {
		// Key: up to '=', a space, '/' or '>', none of them consumed; an '=' as its first
		// character belongs to it.
		ks := i
		for i < n {
			c := raw[i]
			if c == '=' && i == ks {
				i++
				continue
			}
			if c == '=' || isSpace(c) || c == '/' || c == '>' {
				break
			}
			i++
		}
		key := raw[ks:i]
		// Value.
		val, hasVal := attrSpan{}, false
		skip()
		if i < n {
			switch c := raw[i]; c {
			case '/':
				i++ // no value; the solidus is consumed
			case '=':
				i++
				skip()
				if i >= n {
					break
				}
				switch q := raw[i]; q {
				case '>':
				case '"', '\'':
					j := bytes.IndexByte(raw[i+1:], q)
					if j < 0 {
						return attrSpan{}, false // cut short: not a whole tag
					}
					val, hasVal = attrSpan{start: i, end: i + j + 2, quote: q, raw: string(raw[i+1 : i+1+j])}, true
					i += j + 2
				default:
					vs := i
					for i < n && !isSpace(raw[i]) && raw[i] != '>' {
						i++
					}
					val, hasVal = attrSpan{start: vs, end: i, raw: string(raw[vs:i])}, true
				}
			}
		}
		if strings.EqualFold(string(key), "href") {
			return val, hasVal
		}
		skip()
	}
	return attrSpan{}, false
}

// rewrite writes doc with the edits applied (each value replaced by its tracking URL, quoted and
// HTML-escaped) and the pixel inserted at bodyEnd; every other byte is copied as it is.
func rewrite(w io.StringWriter, doc string, edits []linkEdit, targets []string, bodyEnd int, pixel string) {
	pos := 0
	pixelDone := false
	for i, e := range edits {
		if !pixelDone && bodyEnd <= e.start {
			w.WriteString(doc[pos:bodyEnd])
			w.WriteString(pixel)
			pos, pixelDone = bodyEnd, true
		}
		w.WriteString(doc[pos:e.start])
		w.WriteString(`"`)
		w.WriteString(html.EscapeString(targets[i]))
		w.WriteString(`"`)
		pos = e.end
	}
	if !pixelDone {
		w.WriteString(doc[pos:bodyEnd])
		w.WriteString(pixel)
		pos = bodyEnd
	}
	w.WriteString(doc[pos:])
}

// pixelTag is the open pixel for a pixel URL.
func pixelTag(src string) string {
	return `<img src="` + html.EscapeString(src) + `" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">`
}
