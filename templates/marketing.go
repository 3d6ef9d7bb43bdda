package templates

import (
	"errors"
	"regexp"
	"strings"
	"text/template/parse"
)

// CheckMarketing enforces the rule for marketing templates: every part a recipient reads shows
// the unsubscribe link (unsubscribe_url, or preferences_url whose page also unsubscribes) and the
// sender's postal address, whatever the data. The HTML part, when there is one, and the text
// part, when it is written rather than generated from the HTML, must each call both functions at
// the top level of the template, outside any {{if}}, {{range}} or {{with}}, as a bare action:
// {{unsubscribe_url}}, not {{printf "%.0s" unsubscribe_url}} or {{$u := unsubscribe_url}}.
//
// In HTML the link must be the start of an href value (<a href="{{unsubscribe_url}}">) and the
// address element text (<p>{{postal_address}}</p>); in a comment, a <style> or <script>, an
// img src or a title attribute they would not be seen. A literal URL is not accepted: only the
// functions give each recipient their own link. The error is a *PartError naming the part and
// what it lacks.
func CheckMarketing(t Template) error {
	c, err := Compile(t)
	if err != nil {
		return err
	}
	if c.html != nil {
		// Compile ran the escaper, which appended to each action the escapers of its context.
		if err := checkParts("html", c.html.Tree, htmlLink, htmlAddress); err != nil {
			return err
		}
	}
	if c.text != nil {
		if err := checkParts("text", c.text.Tree, bareCall, bareCall); err != nil {
			return err
		}
	}
	return nil
}

// placement tells whether the action at nodes[i], a bare call of a link function, prints where a
// reader sees it.
type placement func(nodes []parse.Node, i int, escapers []string) bool

func checkParts(part string, tree *parse.Tree, link, address placement) error {
	var hasLink, hasAddress bool
	nodes := tree.Root.Nodes
	for i, n := range nodes {
		fn, escapers, ok := call(n)
		if !ok {
			continue
		}
		switch fn {
		case "unsubscribe_url", "preferences_url":
			hasLink = hasLink || link(nodes, i, escapers)
		case "postal_address":
			hasAddress = hasAddress || address(nodes, i, escapers)
		}
	}
	var missing []string
	if !hasLink {
		if part == "html" {
			missing = append(missing, `the unsubscribe link (<a href="{{unsubscribe_url}}">Unsubscribe</a>, or preferences_url)`)
		} else {
			missing = append(missing, "the unsubscribe link ({{unsubscribe_url}} or {{preferences_url}})")
		}
	}
	if !hasAddress {
		if part == "html" {
			missing = append(missing, "the sender's postal address ({{postal_address}} in the text of an element)")
		} else {
			missing = append(missing, "the sender's postal address ({{postal_address}})")
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &PartError{Part: part, Err: errors.New("a marketing template must show " + strings.Join(missing, " and ") +
		" outside any {{if}}, {{range}} or {{with}}, so that every recipient sees it")}
}

// call reports the function an action node calls when it is a bare call of one function with no
// arguments, declaration or pipeline, and the escapers html/template appended to it.
func call(n parse.Node) (fn string, escapers []string, ok bool) {
	a, isAction := n.(*parse.ActionNode)
	if !isAction || a.Pipe == nil || len(a.Pipe.Decl) != 0 || len(a.Pipe.Cmds) == 0 {
		return "", nil, false
	}
	first := a.Pipe.Cmds[0]
	id, isIdent := first.Args[0].(*parse.IdentifierNode)
	if !isIdent || len(first.Args) != 1 {
		return "", nil, false
	}
	for _, c := range a.Pipe.Cmds[1:] {
		esc, isIdent := c.Args[0].(*parse.IdentifierNode)
		if !isIdent || len(c.Args) != 1 || !strings.HasPrefix(esc.Ident, "_html_template_") {
			return "", nil, false // a pipeline the author wrote could hide the value
		}
		escapers = append(escapers, esc.Ident)
	}
	return id.Ident, escapers, true
}

// bareCall accepts any top-level bare call: in text everything prints as written.
func bareCall([]parse.Node, int, []string) bool { return true }

var hrefEndRE = regexp.MustCompile(`(?i)\shref\s*=\s*["']?$`)

// htmlLink accepts a call at the start of an href value: the escaper filtered it as a whole URL
// (not in a comment, script, style or other attribute), and the text before it opens an href.
func htmlLink(nodes []parse.Node, i int, escapers []string) bool {
	if len(escapers) == 0 || escapers[0] != "_html_template_urlfilter" || i == 0 {
		return false
	}
	prev, ok := nodes[i-1].(*parse.TextNode)
	return ok && hrefEndRE.Match(prev.Text)
}

// htmlAddress accepts a call in element text: html/template escapes it as text, and the only
// escaper it adds there is the HTML one (not an attribute's, a comment's, <title>'s or a
// script's).
func htmlAddress(_ []parse.Node, _ int, escapers []string) bool {
	return len(escapers) == 1 && escapers[0] == "_html_template_htmlescaper"
}
